"""A plain Keras 3 script: a small convnet classifying 28x28 digit-like images.

Nothing here knows gpu-grid. Run it by hand:

    KERAS_BACKEND=jax python train.py --batch-size 128 --epochs 3

It trains on MNIST when Keras has it cached (~/.keras/datasets/mnist.npz) and otherwise on a
synthetic stand-in of the same shape (each class a bright stroke at its own place, plus noise),
so it runs offline. The model and the training loop follow keras.io's "Simple MNIST convnet".
"""

import argparse
import os

import keras
import numpy as np

NUM_CLASSES = 10
INPUT_SHAPE = (28, 28, 1)


def synthetic_digits(n, seed):
    """Images of class k carry a bright 4x4 patch at a place of their own; noise everywhere."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, size=n)
    x = rng.normal(0.2, 0.3, size=(n, 28, 28)).astype("float32")
    for k in range(NUM_CLASSES):
        row, col = 3 + (k // 5) * 12, 2 + (k % 5) * 5
        x[y == k, row : row + 4, col : col + 4] += 0.4
    return np.clip(x, 0, 1), y


def load_data(samples):
    cached = os.path.expanduser("~/.keras/datasets/mnist.npz")
    if os.path.exists(cached):
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255
        print("data: MNIST from the Keras cache")
    else:
        x_train, y_train = synthetic_digits(samples, seed=0)
        x_test, y_test = synthetic_digits(samples // 5, seed=1)
        print(f"data: {samples} synthetic digit-like images (no MNIST in the Keras cache)")
    x_train, x_test = x_train[:samples, ..., None], x_test[..., None]
    return (x_train, keras.utils.to_categorical(y_train[:samples], NUM_CLASSES)), (
        x_test,
        keras.utils.to_categorical(y_test, NUM_CLASSES),
    )


def build_model():
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(NUM_CLASSES, activation="softmax"),
        ]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=12000, help="training images (synthetic data)")
    args = parser.parse_args()

    (x_train, y_train), (x_test, y_test) = load_data(args.samples)
    model = build_model()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, validation_split=0.1, verbose=2)

    score = model.evaluate(x_test, y_test, verbose=0)
    print("Test loss:", score[0])
    print("Test accuracy:", score[1])


if __name__ == "__main__":
    main()
