"""A Keras script fed by a PyDataset (batches it makes itself: fit gets no batch_size)."""

import keras
import numpy as np


class Batches(keras.utils.PyDataset):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(128, 8)).astype("float32")
        self.y = (self.x[:, 0] > 0).astype("int32")

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.x[i * 32 : (i + 1) * 32], self.y[i * 32 : (i + 1) * 32]


model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(Batches(), epochs=3, verbose=0)
