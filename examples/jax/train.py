"""A plain JAX script: a two-layer perceptron on 28x28 digit-like images, trained with jax.grad
and SGD under jax.jit. Nothing here knows gpu-grid:

    python train.py --batch-size 128 --epochs 3

The data is a synthetic stand-in of MNIST's shape (each class a bright patch at a place of its
own, under noise), so it runs offline.
"""

import argparse
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np


def digits(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    x = rng.normal(0.2, 0.3, size=(n, 28, 28)).astype("float32")
    for k in range(10):
        row, col = 3 + (k // 5) * 12, 2 + (k % 5) * 5
        x[y == k, row : row + 4, col : col + 4] += 0.4
    return x.reshape(n, -1), y


def init(key, sizes):
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        key, sub = jax.random.split(key)
        params.append((jax.random.normal(sub, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in), jnp.zeros(fan_out)))
    return params


def predict(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def loss_fn(params, x, y):
    logits = predict(params, x)
    return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(y, 10), axis=-1))


@jax.jit
def step(params, x, y, lr):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    return [(w - lr * gw, b - lr * gb) for (w, b), (gw, gb) in zip(params, grads)], loss


@jax.jit
def accuracy(params, x, y):
    return jnp.mean(jnp.argmax(predict(params, x), axis=-1) == y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--samples", type=int, default=12000)
    args = parser.parse_args()

    x_train, y_train = digits(args.samples, seed=0)
    x_test, y_test = digits(args.samples // 5, seed=1)
    params = init(jax.random.PRNGKey(0), [784, args.hidden, args.hidden, 10])
    steps = len(x_train) // args.batch_size
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}: {steps} steps of {args.batch_size} per epoch")
    for epoch in range(1, args.epochs + 1):
        order = np.random.default_rng(epoch).permutation(len(x_train))
        start = time.perf_counter()
        for i in range(steps):
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            params, loss = step(params, x_train[idx], y_train[idx], args.lr)
        loss = float(loss)  # waits for the device
        seconds = time.perf_counter() - start
        print(f"epoch {epoch}: loss {loss:.4f}, {steps * args.batch_size / seconds:.0f} images/s ({seconds:.3f} s)")
    print(f"test accuracy: {float(accuracy(params, x_test, y_test)):.4f}")


if __name__ == "__main__":
    main()
