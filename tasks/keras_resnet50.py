"""Keras 3 ResNet-50 (weights=None, 32x32x3 input, 10 classes) on CIFAR-10 or synthetic data.

`mode: train` runs `model.fit` with SGD; `mode: inference` times `model.predict` passes over the
data, each pass reported as an epoch. CIFAR-10 is read from `data_dir` or the Keras cache when
present (never downloaded), else synthetic data of the same shape; `data` in the result says which.
"""

from __future__ import annotations

from importlib import import_module

import tasks
from tasks import data, keras_common


def build_model(keras, cfg: dict):
    """Logits out (no softmax), so every backend and the torch DDP loop share one loss."""
    return keras.applications.ResNet50(
        weights=None, input_shape=data.SHAPE, classes=data.CLASSES, classifier_activation=None
    )


def load_data(cfg: dict) -> data.Dataset:
    return data.training_data(cfg["images"], cfg.get("data_dir"))


def run(cfg: dict) -> dict:
    return keras_common.run(cfg, import_module("tasks.keras_resnet50"))


if __name__ == "__main__":
    tasks.main(run)
