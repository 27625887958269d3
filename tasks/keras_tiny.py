"""A small CNN trained for real with Keras 3 on CIFAR-10-shaped synthetic data.

The CPU default of `make grid`: a few seconds per trial, so backends and batch sizes can be
compared on any machine. Runs alone: `KERAS_BACKEND=jax python -m tasks.keras_tiny trial.json`.
"""

from __future__ import annotations

from importlib import import_module

import tasks
from tasks import data, keras_common


def build_model(keras, cfg: dict):
    """Two conv blocks and a dense head; logits for 10 classes."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=data.SHAPE),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(data.CLASSES),
        ],
        name="keras_tiny",
    )


def load_data(cfg: dict) -> data.Dataset:
    return data.synthetic(cfg["images"])


def run(cfg: dict) -> dict:
    return keras_common.run(cfg, import_module("tasks.keras_tiny"))


if __name__ == "__main__":
    tasks.main(run)
