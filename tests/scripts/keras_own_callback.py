"""A Keras script that brings its own callbacks: one prints every epoch's loss, one may stop early."""

import keras
import numpy as np


class Printer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seen = 0

    def on_epoch_end(self, epoch, logs=None):
        self.seen += 1
        print(f"callback epoch {epoch} loss {logs['loss']:.6f}")

    def on_train_end(self, logs=None):
        print(f"callback saw {self.seen} epochs")


rng = np.random.default_rng(0)
x = rng.normal(size=(200, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(
    x,
    y,
    batch_size=20,
    epochs=4,
    verbose=0,
    callbacks=[Printer(), keras.callbacks.EarlyStopping(monitor="loss", patience=50)],
)
