"""What the Keras workloads share: data parallelism per backend and a training or inference run.

A Keras workload module defines `build_model(keras, cfg)` (a model whose outputs are logits) and
`load_data(cfg)` (a `tasks.data.Dataset`); its `run(cfg)` is `keras_common.run(cfg, module)`. It
calls `model.fit` (or times `model.predict` passes) as any script would: the trial bootstrap set
the backend and the memory cap before Keras was imported, and it measures the epochs, images/s
and the framework's peak memory (tasks/site/gridtrial).
"""

from __future__ import annotations

import os
import time
from importlib import import_module
from types import ModuleType
from typing import Any

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
        from tasks import torch_ddp

        return torch_ddp.run(cfg, workload.__name__, k)
    keras = import_module("keras")
    global_batch = cfg["batch_size"] * k
    dataset = whole_batches(workload.load_data(cfg), global_batch)
    model, how = distributed_model(keras, workload, cfg)
    if cfg.get("mode", "train") == "train":
        callbacks = slowdown_callbacks(keras)
        model.fit(dataset.x, dataset.y, batch_size=global_batch, epochs=cfg["epochs"], verbose=0, callbacks=callbacks)
    else:
        for _ in range(cfg["epochs"]):
            model.predict(dataset.x, batch_size=global_batch, verbose=0)
    return {**dataset.fields(), "parallelism": how}


SLOWDOWN_VAR = "KERAS_SLOWDOWN_PCT"


def slowdown_callbacks(keras: ModuleType) -> list:
    """A slowdown injected on purpose, for benchmarks of the nightly check (`env: {KERAS_SLOWDOWN_PCT:
    10}` in a spec): after each training step, as much extra CPU work as that percentage of the
    step's own time. Not a config value: the trial ids and the join of `grid compare` stay those of
    the code without it, as a slower commit's would. `0` installs the same per-step callback with
    no extra work: a callback at each step makes Keras wait for the step's results (on a GPU, an
    end to its asynchronous dispatch), so the unchanged nights of a benchmark pay that too."""
    text = os.environ.get(SLOWDOWN_VAR, "").strip()
    if not text:
        return []
    pct = max(float(text), 0.0)

    class Slowdown(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            until = now + (now - self.t0) * pct / 100
            while time.perf_counter() < until:
                pass

    return [Slowdown()]
