"""A Keras script fed by tf.data pipelines (no batch_size argument to fit), then evaluated."""

import keras
import numpy as np
import tensorflow as tf

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(256, seed=1).batch(16, drop_remainder=True)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(train, epochs=3, verbose=0)
model.evaluate(tf.data.Dataset.from_tensor_slices((x, y)).batch(64), verbose=0)
