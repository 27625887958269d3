"""What the Keras workloads share: data parallelism per backend and a training or inference run.

A Keras workload module defines `build_model(keras, cfg)` (a model whose outputs are logits) and
`load_data(cfg)` (a `tasks.data.Dataset`); its `run(cfg)` is `keras_common.run(cfg, module)`. It
calls `model.fit` (or times `model.predict` passes) as any script would: the trial bootstrap set
the backend and the memory cap before Keras was imported, and it measures the epochs, images/s
and the framework's peak memory (tasks/site/gridtrial).
"""

from __future__ import annotations

import math
import os
from importlib import import_module
from types import ModuleType
from typing import Any

import numpy as np

from tasks.data import whole_batches
from tasks.devices import gpus_error


def compile_model(keras: ModuleType, workload: ModuleType, cfg: dict):
    model = workload.build_model(keras, cfg)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _jax_model(keras: ModuleType, workload: ModuleType, cfg: dict, k: int) -> tuple[Any, str]:
    devices = import_module("jax").devices()
    if len(devices) < k:
        raise gpus_error(k, f"jax sees {len(devices)} {devices[0].platform} device(s)")
    if k == 1:
        return compile_model(keras, workload, cfg), "single device"
    names = keras.distribution.list_devices()[:k]
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=names))
    model = compile_model(keras, workload, cfg)
    held = len(model.weights[0].value.sharding.device_set)
    return model, f"keras DataParallel over {names} (weights replicated on {held} devices)"


def _tensorflow_model(keras: ModuleType, workload: ModuleType, cfg: dict, k: int) -> tuple[Any, str]:
    tf = import_module("tensorflow")
    gpus = tf.config.list_logical_devices("GPU")
    if k == 1:
        return compile_model(keras, workload, cfg), "single device"
    if len(gpus) < k:
        raise gpus_error(k, f"tensorflow sees {len(gpus)} GPU(s)")
    strategy = tf.distribute.MirroredStrategy(devices=[g.name for g in gpus[:k]])
    with strategy.scope():
        return compile_model(keras, workload, cfg), f"tf.distribute.MirroredStrategy over {k} GPUs"


def distributed_model(keras: ModuleType, workload: ModuleType, cfg: dict) -> tuple[Any, str]:
    """The compiled model under the backend's data parallelism, and a description of it.
    (torch with k > 1 runs in tasks/torch_ddp.py instead.)"""
    k = cfg.get("gpus", 1)
    if cfg["backend"] == "jax":
        return _jax_model(keras, workload, cfg, k)
    if cfg["backend"] == "tensorflow":
        return _tensorflow_model(keras, workload, cfg, k)
    return compile_model(keras, workload, cfg), "single device"


def run(cfg: dict, workload: ModuleType) -> dict:
    """One Keras trial: data, model, `fit` (or `predict` passes, each reported as an epoch)."""
    k = cfg.get("gpus", 1)
    if cfg["backend"] == "torch" and k > 1:
        if slowdown_pct():
            raise ValueError(f"{SLOWDOWN_VAR} slows Keras' own loop; torch with gpus > 1 trains in tasks/torch_ddp.py")
        from tasks import torch_ddp

        return torch_ddp.run(cfg, workload.__name__, k)
    keras = import_module("keras")
    global_batch = cfg["batch_size"] * k
    dataset = slowed_down(whole_batches(workload.load_data(cfg), global_batch), global_batch, slowdown_pct())
    model, how = distributed_model(keras, workload, cfg)
    if cfg.get("mode", "train") == "train":
        model.fit(dataset.x, dataset.y, batch_size=global_batch, epochs=cfg["epochs"], verbose=0)
    else:
        for _ in range(cfg["epochs"]):
            model.predict(dataset.x, batch_size=global_batch, verbose=0)
    return {**dataset.fields(), "parallelism": how}


SLOWDOWN_VAR = "KERAS_SLOWDOWN_PCT"


def slowdown_pct() -> float:
    """KERAS_SLOWDOWN_PCT as a percentage (unset or empty: 0), checked before anything trains."""
    text = os.environ.get(SLOWDOWN_VAR, "").strip()
    try:
        pct = float(text or 0)
    except ValueError:
        pct = float("nan")
    if not 0 <= pct <= 1000:
        raise ValueError(f"Received: {SLOWDOWN_VAR}={text!r}, expected a percentage 0 <= P <= 1000, e.g. 10")
    return pct


def slowed_down(dataset: Any, global_batch: int, pct: float) -> Any:
    """A slower commit on purpose, for benchmarks of the nightly check (`env: {KERAS_SLOWDOWN_PCT:
    10}` in a spec): every epoch (of `fit`, or a `predict` pass) runs P% more batches, its first
    batches once more, so it does P% more of the same device work. Nothing runs between the steps:
    a GPU's steps stay as asynchronous as in the code without it (a per-step callback, the way this
    was done before, made every step wait for the host, on the unchanged nights too). Not a config
    value: the trial ids and the join of `grid compare` stay those of the code without it, as a
    slower commit's would. The row says so in `data_note`; its `images_per_epoch` counts the extra
    batches. `pct` 0 (the variable unset, empty or `0`): the dataset as it is."""
    if pct == 0:
        return dataset
    steps = len(dataset.y) // global_batch
    extra = round(steps * pct / 100)
    if extra == 0:
        raise ValueError(
            f"Received: {SLOWDOWN_VAR}={pct:g} with {steps} steps an epoch: that is less than one step more; "
            f"raise images to at least {math.ceil(50 / pct) * global_batch} (steps x batch) or the percentage"
        )
    again = np.arange(extra * global_batch) % len(dataset.y)  # past one epoch's worth, round again
    note = (
        f"{dataset.note}; {SLOWDOWN_VAR}={pct:g}: {extra} more steps an epoch on top of {steps} "
        f"({100 * extra / steps:.1f}% more work), its first batches again"
    )
    x, y = np.concatenate([dataset.x, dataset.x[again]]), np.concatenate([dataset.y, dataset.y[again]])
    return type(dataset)(x, y, dataset.source, note)
