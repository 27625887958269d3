"""What `memory_fraction` does on each backend: one small function per framework.

Each returns the `memory_cap_method` string that says exactly what was applied. The jax and
mxnet caps are environment variables and must be set before the framework is imported; the
tensorflow and torch caps take the imported module and must run before it touches a GPU
(tasks/site/gridtrial/boot.py calls each at its moment, in every process of a trial).
Stdlib only at import time: every trial interpreter imports this module, MXNet's included.
"""

from __future__ import annotations

import os

NO_GPU = " (no GPU visible: not applied)"
DEFAULT = "none (framework default)"
# jaxlib 0.4.32 renamed the fraction variable (openxla/xla#16457); it raises when both are set.
JAX_NEW_NAME_SINCE = (0, 4, 32)


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def jax_fraction_variable(jaxlib_version: str | None = None) -> str:
    """The fraction variable the installed jaxlib reads (it is jaxlib's xla_client that reads it)."""
    from importlib import metadata

    version = jaxlib_version or metadata.version("jaxlib")
    if _release(version) >= JAX_NEW_NAME_SINCE:
        return "XLA_CLIENT_MEM_FRACTION"
    return "XLA_PYTHON_CLIENT_MEM_FRACTION"


def jax(fraction: float | None, preallocate: bool, gpu_ids: list[str], env=os.environ) -> str:
    """Set jax's allocator variables in `env`; call before `import jax` (or keras on jax).

    A process whose parent already set the fraction variable to this value keeps its name (no
    package metadata to read in every process of a trial)."""
    inherited = [
        v
        for v in ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION")
        if fraction is not None and env.get(v) == f"{fraction:g}"
    ]
    name = inherited[0] if len(inherited) == 1 else jax_fraction_variable()
    other = ({"XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION"} - {name}).pop()
    if other in env:
        raise RuntimeError(
            f"{other} is set in the trial's environment, but gpu-grid sets {name} for "
            f"memory_fraction and jax raises when both are set; remove {other} from the "
            f"spec's env"
        )
    applied = []
    if fraction is not None:
        env[name] = f"{fraction:g}"
        applied.append(f"{name}={fraction:g}")
    if not preallocate:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        applied.append("XLA_PYTHON_CLIENT_PREALLOCATE=false")
    if not applied:
        return DEFAULT
    return "jax: " + ", ".join(applied) + ("" if gpu_ids else NO_GPU)


def tensorflow(
    tf, fraction: float | None, memory_growth: bool, gpu_ids: list[str], totals_mib: list[float] | None = None
) -> str:
    """One logical device per visible GPU, capped at `fraction` of its memory, or memory growth.

    `totals_mib` is each GPU's memory as the worker read it from NVML; without it NVML is asked here."""
    gpus = tf.config.list_physical_devices("GPU")
    if memory_growth:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        ignored = "" if fraction is None else f" (memory_fraction={fraction:g} not applied: growth instead)"
        return f"tensorflow: set_memory_growth(True) on {len(gpus)} GPU(s)" + ignored + ("" if gpus else NO_GPU)
    if fraction is None:
        return DEFAULT
    if not gpus:
        return f"tensorflow: logical device memory_limit={fraction:g} x device memory" + NO_GPU
    if len(gpu_ids) < len(gpus):
        raise RuntimeError(
            f"tensorflow sees {len(gpus)} GPU(s) but the trial lists gpu_ids={gpu_ids}; the cap "
            f"needs each GPU's NVML id: run the trial through grid, or set gpu_ids in trial.json"
        )
    totals = list(totals_mib or []) if len(totals_mib or []) >= len(gpus) else gpu_total_mib(gpu_ids)
    limits = [int(fraction * total) for total in totals[: len(gpus)]]
    for gpu, limit in zip(gpus, limits):
        tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
    shown = ",".join(str(limit) for limit in sorted(set(limits)))
    return f"tensorflow: logical device memory_limit={shown} MiB ({fraction:g} x device memory) on {len(gpus)} GPU(s)"


def torch(torch_module, fraction: float | None, devices: list[int]) -> str:
    """`set_per_process_memory_fraction` on each of `devices` (creating their CUDA contexts): call it
    only for the devices this process uses, e.g. a DDP rank's own."""
    if fraction is None:
        return DEFAULT
    for device in devices:
        torch_module.cuda.set_per_process_memory_fraction(fraction, device)
    return torch_method(fraction, len(devices))


def torch_method(fraction: float, devices: int | None) -> str:
    """What the torch cap did: on how many devices, or that none was visible (None)."""
    if devices is None:
        return f"torch: set_per_process_memory_fraction({fraction:g})" + NO_GPU
    return f"torch: set_per_process_memory_fraction({fraction:g}) on {devices} device(s)"


def mxnet(fraction: float | None, gpu_ids: list[str], env=os.environ) -> str:
    """MXNet has no per-process fraction: reserve the rest of the GPU from its memory pool."""
    if fraction is None:
        return DEFAULT
    reserve = round((1 - fraction) * 100)
    env["MXNET_GPU_MEM_POOL_RESERVE"] = str(reserve)
    method = f"mxnet: MXNET_GPU_MEM_POOL_RESERVE={reserve} (closest documented control; no per-process fraction)"
    return method + ("" if gpu_ids else NO_GPU)


def gpu_total_mib(gpu_ids: list[str]) -> list[float]:
    """Total memory of each of the trial's GPUs (NVML index or UUID, as the worker assigned them)."""
    import pynvml

    pynvml.nvmlInit()
    try:
        handles = [
            pynvml.nvmlDeviceGetHandleByUUID(g)
            if g.startswith(("GPU-", "MIG-"))
            else pynvml.nvmlDeviceGetHandleByIndex(int(g))
            for g in gpu_ids
        ]
        return [pynvml.nvmlDeviceGetMemoryInfo(h).total / (1024 * 1024) for h in handles]
    finally:
        pynvml.nvmlShutdown()
