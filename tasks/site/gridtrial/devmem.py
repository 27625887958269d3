"""The framework's own device-memory counters, read inside a trial process.

Each function returns `(framework_peak_mib, framework_mem)`: the peak summed over the process's
devices (None where the framework keeps no device counter, e.g. on CPU) and the raw per-device
figures. `peak_now` reads whichever framework a process has started, and never starts one: the
bootstrap calls it after each Keras call and at exit. NVML figures measured from outside the
child are a separate column (grid/trial/nvml.py). Stdlib only at import time.
"""

from __future__ import annotations

MIB = 1024 * 1024


def on_cpu(framework: str) -> tuple[None, dict]:
    return None, {"device": "cpu", "note": f"no GPU visible: {framework} keeps no device memory counters on CPU"}


def _total(per_device: dict, key: str) -> float:
    return sum(d[key] for d in per_device.values()) / MIB


def tensorflow(tf, n_devices: int) -> tuple[float | None, dict]:
    """`get_memory_info` per logical GPU: bytes in use by TF's allocator, current and peak."""
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        return on_cpu("tensorflow")
    per = {f"GPU:{i}": tf.config.experimental.get_memory_info(f"GPU:{i}") for i in range(min(n_devices, len(gpus)))}
    return _total(per, "peak"), {"counter": "tf.config.experimental.get_memory_info", "devices": per}


def jax(devices: list) -> tuple[float | None, dict]:
    """`device.memory_stats()`: the allocator's peak bytes in use, and its limit (the cap at work)."""
    per = {str(d): d.memory_stats() for d in devices}
    if not per or any(stats is None for stats in per.values()):
        return on_cpu("jax")
    keys = ("peak_bytes_in_use", "bytes_in_use", "bytes_limit", "bytes_reserved", "largest_alloc_size", "num_allocs")
    per = {name: {k: stats[k] for k in keys if k in stats} for name, stats in per.items()}
    return _total(per, "peak_bytes_in_use"), {"counter": "jax Device.memory_stats", "devices": per}


def torch_device(torch_module, device: int) -> dict:
    """One CUDA device's caching-allocator peaks: allocated (tensors) and reserved (held from CUDA)."""
    cuda = torch_module.cuda
    return {
        "max_memory_allocated": cuda.max_memory_allocated(device),
        "max_memory_reserved": cuda.max_memory_reserved(device),
        "memory_allocated": cuda.memory_allocated(device),
    }


def torch_summary(per: dict) -> tuple[float | None, dict]:
    """Peak = max_memory_allocated summed over devices; reserved is in the detail."""
    if not per:
        return on_cpu("torch")
    return _total(per, "max_memory_allocated"), {"counter": "torch.cuda.max_memory_allocated", "devices": per}


def torch(torch_module, devices: list[int]) -> tuple[float | None, dict]:
    if not torch_module.cuda.is_available():
        return on_cpu("torch")
    return torch_summary({f"cuda:{d}": torch_device(torch_module, d) for d in devices})


def mxnet(mx, n_devices: int) -> tuple[float | None, dict]:
    """MXNet has no peak counter: `gpu_memory_info` gives the device's free and total bytes now.

    Read after the run, used = total - free is what MXNet's pool still holds (it keeps freed
    memory), so it stands in for the peak; it is device-wide, which an exclusive trial owns.
    """
    if n_devices == 0 or mx.context.num_gpus() == 0:
        return on_cpu("mxnet")
    per = {}
    for i in range(n_devices):
        free, total = mx.context.gpu_memory_info(i)
        per[f"gpu({i})"] = {"free": free, "total": total, "used": total - free}
    return _total(per, "used"), {"counter": "mx.context.gpu_memory_info (device used at end of run)", "devices": per}


def _jax_started(jax) -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):
        return False


def _tensorflow_started() -> bool:
    try:
        from tensorflow.python.eager import context

        return bool(context.context()._initialized)
    except (ImportError, AttributeError):
        return False


def peak_now(name: str, module, on_gpu: bool) -> tuple[float | None, dict] | None:
    """The framework's peak so far in this process, or None if it has not started on any device."""
    if name == "jax":
        return jax(module.local_devices()) if _jax_started(module) else None
    if name == "tensorflow":
        if not _tensorflow_started():
            return None
        return tensorflow(module, len(module.config.list_logical_devices("GPU"))) if on_gpu else on_cpu(name)
    if name == "torch":
        if not module.cuda.is_initialized():
            return None if on_gpu else on_cpu(name)
        used = [d for d in range(module.cuda.device_count()) if module.cuda.max_memory_reserved(d) > 0]
        return torch(module, used)
    return None
