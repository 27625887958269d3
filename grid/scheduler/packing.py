"""Packing by footprint: which trials may run together on one GPU.

A timing trial (`exclusive`) runs alone on its GPUs. Trials that are not exclusive (a search's
memory probes, or every trial of a spec with `exclusive: false`) share a GPU as long as the sum of
their expected footprints stays within the card's memory minus a margin. A trial's expected
footprint per GPU is the larger of its cap (memory_fraction x card + the CUDA context and runtime
that no cap covers) and what earlier rows of the same config measured (NVML peak); a trial with
neither (no cap, never measured) is taken to need the whole card. Where the card's memory is
unknown (CPU slots, fake GPUs without --gpu-memory-mib), `trials_per_gpu` bounds the count instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from grid.shared import Trial, TrialStatus

# Memory a capped process uses on the GPU beyond its cap: the CUDA context and the framework's
# runtime (measured on an H200: jax 573-649 MiB above fraction x card, torch ~500 MiB).
CONTEXT_MIB = 700.0
MAX_PER_GPU = 32  # trials on one GPU at most, whatever their footprints


def margin_mib(card_mib: float) -> float:
    """Card memory kept free when packing: 1 GiB, or 5% on big cards."""
    return max(1024.0, 0.05 * card_mib)


@dataclass(frozen=True)
class Tenant:
    ticket: int
    exclusive: bool
    footprint_mib: float | None  # None: unknown (packing by count)


def measured_peaks(table: pa.Table) -> dict[str, float]:
    """config_json -> the largest NVML peak per GPU an ok or oom row of that config measured."""
    if table.num_rows == 0 or "gpu_mem_peak_mib" not in table.column_names:
        return {}
    peaks: dict[str, float] = {}
    columns = [table.column(c).to_pylist() for c in ("config_json", "gpu_mem_peak_mib", "status")]
    gpus = table.column("gpu_ids").to_pylist() if "gpu_ids" in table.column_names else [None] * table.num_rows
    for config, peak, status, ids in zip(*columns, gpus):
        if config and peak and status in (TrialStatus.OK, TrialStatus.OOM):
            per_gpu = peak / max(1, len(ids or []))
            peaks[config] = max(peaks.get(config, 0.0), per_gpu)
    return peaks


def footprint(trial: Trial, card_mib: float | None, measured: dict[str, float]) -> float | None:
    """What the trial is expected to use on each of its GPUs, MiB; None when nothing tells."""
    from grid.spec.expand import canonical_config

    fraction = trial.config.get("memory_fraction")
    capped = fraction * card_mib + CONTEXT_MIB if fraction is not None and card_mib else None
    seen = measured.get(canonical_config(trial.config))
    known = [v for v in (capped, seen) if v is not None]
    return max(known) if known else None


def fits(
    trial: Trial, need_mib: float | None, card_mib: float | None, tenants: Iterable[Tenant], trials_per_gpu: int
) -> bool:
    """May the trial start on a GPU that already runs `tenants`?"""
    tenants = list(tenants)
    if not tenants:
        return True
    if trial.exclusive or any(t.exclusive for t in tenants) or len(tenants) >= MAX_PER_GPU:
        return False
    if card_mib is None:  # no memory figure to pack by: a count
        return len(tenants) < trials_per_gpu
    if need_mib is None or any(t.footprint_mib is None for t in tenants):
        return False  # an unknown footprint may need the whole card
    return sum(t.footprint_mib or 0.0 for t in tenants) + need_mib <= card_mib - margin_mib(card_mib)
