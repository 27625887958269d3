"""GPU memory seen from outside the child, through NVML (nvidia-ml-py).

Filled in by the measurement issue; without NVML or GPUs it returns no samplers, and the GPU
memory columns stay null.
"""

from __future__ import annotations


def gpu_samplers(gpu_ids: tuple[str, ...], interval_ms: int) -> tuple[list, dict]:
    """Samplers for these GPUs, and the GPU facts (name, memory, driver) for the row."""
    return [], {}
