"""What the training-loop probes share (lightning_probe, hf_probe, loader_probe): the samples of
a batch, logged values as numbers, and waiting for the GPU at an epoch's edge. Stdlib only."""

from __future__ import annotations

import sys
from typing import Any


def batch_samples(batch: Any) -> int | None:
    """The number of samples in a batch: the first dimension of its first tensor (a tuple, a list or
    a dict of tensors, a tensor), None where nothing tells."""
    while isinstance(batch, (list, tuple, dict)) and batch:
        batch = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    shape = getattr(batch, "shape", None)
    try:
        return int(shape[0]) if shape is not None and len(shape) else None
    except (TypeError, IndexError):
        return None


def numbers(metrics: Any) -> dict[str, float]:
    """Logged values (tensors or numbers) as floats; anything that is not one number is left out."""
    out = {}
    for name, value in dict(metrics or {}).items():
        try:
            number = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if number == number:  # NaN: no value
            out[str(name)] = number
    return out


def sync() -> None:
    """Wait for the GPU's queued work (an epoch ends when its work does)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
