"""A Keras script that survives interruption its own way: BackupAndRestore keeps its state in the
folder given by --backup and, started again, goes on from the epoch it reached. The first run is
cut off after epoch 3 of 6 while the file `cut-once` exists (as a lost node or Ctrl-C would)."""

import argparse
import os

import keras
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("--backup", required=True)
args = p.parse_args()


class CutOnce(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 2 and os.path.exists("cut-once"):
            os.remove("cut-once")
            os._exit(3)


rng = np.random.default_rng(0)
x = rng.normal(size=(200, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = model.fit(
    x,
    y,
    batch_size=20,
    epochs=6,
    verbose=0,
    callbacks=[keras.callbacks.BackupAndRestore(os.path.join(args.backup, "backup")), CutOnce()],
)
print(f"epochs run in this process: {len(history.epoch)}")
