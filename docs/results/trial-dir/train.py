"""A typical Keras script: keep the best epoch with ModelCheckpoint, load it back, evaluate it."""

import argparse
import os

import keras
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--units", type=int, default=16)
p.add_argument("--out", default=".")
args = p.parse_args()
x = np.random.rand(2048, 32).astype("float32")
y = (x.sum(1) > 16).astype("float32")
model = keras.Sequential(
    [keras.Input((32,)), keras.layers.Dense(args.units, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
)
model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
path = os.path.join(args.out, "best.keras")
model.fit(
    x,
    y,
    batch_size=64,
    epochs=4,
    validation_split=0.2,
    verbose=0,
    callbacks=[keras.callbacks.ModelCheckpoint(path, save_best_only=True)],
)
best = keras.models.load_model(path)
loaded = best.layers[0].units
print(f"loaded units: {loaded}")
print(f"test accuracy: {best.evaluate(x, y, verbose=0)[1]}")
