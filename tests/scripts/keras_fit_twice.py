"""A Keras script that trains in two phases: two `fit` calls, the second with validation."""

import keras
import numpy as np

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(x, y, batch_size=32, epochs=2, verbose=0)
model.fit(x, y, batch_size=64, epochs=3, verbose=0, validation_split=0.25)
print("trained twice")
