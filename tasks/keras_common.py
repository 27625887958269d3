"""What the Keras workloads share: backend setup with its memory cap, data parallelism, a timed
training or inference loop, and the result fields.

A Keras workload module defines `build_model(keras, cfg)` (a model whose outputs are logits) and
`load_data(cfg)` (a `tasks.data.Dataset`), and its `run` is `keras_common.run(trial, module)`.
The framework is imported here, inside the trial's process, after its memory cap is set.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from importlib import import_module, metadata
from types import ModuleType
from typing import Any

from tasks import devmem, memcap, protocol


@dataclass
class Backend:
    """The imported framework of this trial process and what was done to set it up."""

    name: str  # tensorflow | jax | torch
    fw: ModuleType
    keras: ModuleType
    import_s: float
    memory_cap_method: str

    def versions(self) -> dict[str, str | None]:
        found = {"keras": self.keras.__version__, "numpy": _version("numpy"), self.name: self.fw.__version__}
        if self.name == "jax":
            found["jaxlib"] = _version("jaxlib")
        if self.name == "torch":
            found["cuda"] = self.fw.version.cuda
        if self.name == "tensorflow":
            found["cuda"] = self.fw.sysconfig.get_build_info().get("cuda_version")
        return found


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def check_backend(backend: str) -> None:
    """Keras reads KERAS_BACKEND once, at import; the parent must have set it to the trial's backend."""
    env = os.environ.get("KERAS_BACKEND")
    if env != backend:
        raise RuntimeError(f"the trial's backend is {backend!r} but KERAS_BACKEND={env!r} in this process; "
                           f"keras picks its backend from KERAS_BACKEND at import, so run the trial with "
                           f"KERAS_BACKEND={backend} (grid sets it from the trial's config)")


def gpus_error(k: int, seen: str) -> RuntimeError:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return RuntimeError(f"gpus={k} needs {k} visible GPUs; CUDA_VISIBLE_DEVICES={visible!r} ({seen}); "
                        f"run it on a node with {k} free GPUs or set gpus: [1]")


def setup(trial: dict) -> Backend:
    """Set the memory cap at the right moment for each framework, and time the imports."""
    cfg, gpu_ids = trial["config"], list(trial.get("gpu_ids") or [])
    backend = cfg["backend"]
    check_backend(backend)
    fraction = cfg.get("memory_fraction")
    t0 = time.perf_counter()
    if backend == "jax":
        method = memcap.jax(fraction, cfg.get("preallocate", True), gpu_ids)
        fw = import_module("jax")
        import_s = time.perf_counter() - t0
    elif backend == "tensorflow":
        fw = import_module("tensorflow")
        import_s = time.perf_counter() - t0
        method = memcap.tensorflow(fw, fraction, cfg.get("memory_growth", False), gpu_ids)
    else:
        fw = import_module("torch")
        import_s = time.perf_counter() - t0
        # A DDP trial caps each rank's own device in that rank; the parent never touches CUDA.
        method = memcap.torch(fw, fraction) if cfg.get("gpus", 1) == 1 else None
    t1 = time.perf_counter()
    keras = import_module("keras")
    return Backend(backend, fw, keras, import_s + time.perf_counter() - t1, method)


def make_epoch_timer(keras: ModuleType):
    class EpochTimer(keras.callbacks.Callback):
        """Wall time of each epoch; Keras converts the epoch's logs to Python numbers at its end,
        which waits for the device."""

        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._t0)

    return EpochTimer()


def compile_model(b: Backend, workload: ModuleType, cfg: dict):
    model = workload.build_model(b.keras, cfg)
    model.compile(optimizer=b.keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss=b.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _jax_model(b: Backend, workload: ModuleType, cfg: dict, k: int) -> tuple[Any, list, str]:
    devices = b.fw.devices()
    if len(devices) < k:
        raise gpus_error(k, f"jax sees {len(devices)} {devices[0].platform} device(s)")
    if k == 1:
        return compile_model(b, workload, cfg), devices[:1], "single device"
    names = b.keras.distribution.list_devices()[:k]
    b.keras.distribution.set_distribution(b.keras.distribution.DataParallel(devices=names))
    model = compile_model(b, workload, cfg)
    held = len(model.weights[0].value.sharding.device_set)
    return model, devices[:k], f"keras DataParallel over {names} (weights replicated on {held} devices)"


def _tensorflow_model(b: Backend, workload: ModuleType, cfg: dict, k: int) -> tuple[Any, list, str]:
    gpus = b.fw.config.list_logical_devices("GPU")
    if k == 1:
        return compile_model(b, workload, cfg), gpus[:1], "single device"
    if len(gpus) < k:
        raise gpus_error(k, f"tensorflow sees {len(gpus)} GPU(s)")
    strategy = b.fw.distribute.MirroredStrategy(devices=[g.name for g in gpus[:k]])
    with strategy.scope():
        return compile_model(b, workload, cfg), gpus[:k], f"tf.distribute.MirroredStrategy over {k} GPUs"


def distributed_model(b: Backend, workload: ModuleType, cfg: dict) -> tuple[Any, list, str]:
    """The compiled model under the backend's data parallelism; also its devices and a description.
    (torch with k > 1 runs in tasks/torch_ddp.py instead.)"""
    k = cfg.get("gpus", 1)
    if b.name == "jax":
        return _jax_model(b, workload, cfg, k)
    if b.name == "tensorflow":
        return _tensorflow_model(b, workload, cfg, k)
    return compile_model(b, workload, cfg), [0] if b.fw.cuda.is_available() else [], "single device"


def timed_passes(b: Backend, model, data, cfg: dict, global_batch: int) -> list[float]:
    """Train with `model.fit`, or time each `model.predict` pass over the data as an epoch."""
    if cfg.get("mode", "train") == "train":
        timer = make_epoch_timer(b.keras)
        model.fit(data.x, data.y, batch_size=global_batch, epochs=cfg["epochs"], callbacks=[timer], verbose=0)
        return timer.times
    times = []
    for _ in range(cfg["epochs"]):
        t0 = time.perf_counter()
        model.predict(data.x, batch_size=global_batch, verbose=0)
        times.append(time.perf_counter() - t0)
    return times


def peak_memory(b: Backend, devices: list, k: int) -> tuple[float | None, dict]:
    if b.name == "jax":
        return devmem.jax(devices)
    if b.name == "tensorflow":
        return devmem.tensorflow(b.fw, k)
    return devmem.torch(b.fw, devices)


def whole_batches(data, global_batch: int):
    """Every epoch runs whole global batches only, so k devices always split a batch evenly."""
    n = len(data.y) // global_batch * global_batch
    if n == 0:
        raise ValueError(f"images={len(data.y)} is fewer than one global batch of {global_batch} "
                         f"(batch_size x gpus); raise images or lower batch_size")
    return type(data)(data.x[:n], data.y[:n], data.source, data.note)


def single_process(b: Backend, workload: ModuleType, cfg: dict, global_batch: int) -> dict:
    """`model.fit` in this process, over one device or the backend's data parallelism."""
    dataset = whole_batches(workload.load_data(cfg), global_batch)
    model, devices, how = distributed_model(b, workload, cfg)
    times = timed_passes(b, model, dataset, cfg, global_batch)
    return {"epoch_times": times, "memory_cap_method": b.memory_cap_method, "how": how,
            "memory": peak_memory(b, devices, cfg.get("gpus", 1)),
            "data": {**dataset.fields(), "images_per_epoch": len(dataset.y)}}


def run(trial: dict, workload: ModuleType) -> dict:
    """One Keras trial, start to finish: setup, data, model, timed epochs, memory, result fields."""
    cfg = trial["config"]
    b = setup(trial)
    k = cfg.get("gpus", 1)
    global_batch = cfg["batch_size"] * k
    protocol.record(import_s=b.import_s, framework=b.name, framework_version=b.fw.__version__,
                    versions=b.versions(), global_batch=global_batch, memory_cap_method=b.memory_cap_method)
    if b.name == "torch" and k > 1:
        from tasks import torch_ddp

        out = torch_ddp.run(trial, workload.__name__, k)
    else:
        out = single_process(b, workload, cfg, global_batch)
    peak, mem = out["memory"]
    return {
        **protocol.epoch_summary(out["epoch_times"], out["data"]["images_per_epoch"]),
        **out["data"],
        "import_s": b.import_s,
        "framework": b.name,
        "framework_version": b.fw.__version__,
        "versions": b.versions(),
        "global_batch": global_batch,
        "mode": cfg.get("mode", "train"),
        "parallelism": out["how"],
        "framework_peak_mib": peak,
        "framework_mem": mem,
        "memory_cap_method": out["memory_cap_method"],
    }
