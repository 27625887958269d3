"""Packing by footprint: which trials may run together on one GPU.

A timing trial (`exclusive`) runs alone on its GPUs. Trials that are not exclusive (a search's
memory probes, or every trial of a spec with `exclusive: false`) share a GPU as long as the sum of
their expected footprints stays within the card's memory minus a margin. A trial's expected
footprint per GPU is the larger of its cap (memory_fraction x card + the CUDA context and runtime
that no cap covers) and what earlier rows of the same config measured (NVML peak); a trial with
neither (no cap, never measured) is taken to need the whole card. Where the card's memory is
unknown (CPU slots, fake GPUs without --gpu-memory-mib), `trials_per_gpu` bounds the count instead.

Memory is not the only thing they share: trials that keep the GPU busy gain nothing from sharing it
(each only waits for the others' kernels). Sharing also needs their expected busy shares (NVML's
utilisation of earlier rows of each config) to add up to no more than the GPU's time. And the first
trial of a program on a node (compile_key: its config less the memory settings) runs before the
others that would load what it compiles from the node's cache; they pack once it ended (driver.py).
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
BUSY_LIMIT_PCT = 100.0  # trials share a GPU only while their expected busy shares add up to no more


def margin_mib(card_mib: float) -> float:
    """Card memory kept free when packing: 1 GiB, or 5% on big cards."""
    return max(1024.0, 0.05 * card_mib)


@dataclass(frozen=True)
class Tenant:
    ticket: int
    exclusive: bool
    footprint_mib: float | None  # None: unknown (packing by count)
    busy_pct: float = 0.0  # the share of the GPU's time it is expected to keep a kernel running


@dataclass
class Expected:
    """What earlier rows of each config measured: its NVML peak per GPU and how busy it kept its GPU."""

    peak_mib: dict[str, float]
    busy_pct: dict[str, float]

    def add(self, config_json: str | None, status: str, peak: float | None, gpus: int, busy: float | None) -> None:
        if not config_json or status not in (TrialStatus.OK, TrialStatus.OOM):
            return
        if peak:
            self.peak_mib[config_json] = max(self.peak_mib.get(config_json, 0.0), peak / max(1, gpus))
        if busy is not None and status == TrialStatus.OK:
            self.busy_pct[config_json] = max(self.busy_pct.get(config_json, 0.0), busy)


def compile_key(trial: Trial) -> str:
    """What a compilation cache keys on, roughly: the program and its shapes, the trial's config less
    the memory settings (a cap changes no compiled program) and the repeat."""
    from grid.spec.expand import canonical_config

    shapes = {k: v for k, v in trial.config.items() if k not in ("memory_fraction", "preallocate", "memory_growth")}
    return f"{trial.workload}\n{canonical_config(shapes)}"


def measured(table: pa.Table) -> Expected:
    """What earlier rows of each config measured (ok and oom rows: an OOM's peak is a lower bound)."""
    expected = Expected({}, {})
    if table.num_rows == 0:
        return expected
    names = ("config_json", "status", "gpu_mem_peak_mib", "gpu_ids", "gpu_util_pct")
    columns = [table.column(c).to_pylist() if c in table.column_names else [None] * table.num_rows for c in names]
    for config, status, peak, ids, busy in zip(*columns):
        expected.add(config, status, peak, len(ids or []), busy)
    return expected


def footprint(trial: Trial, card_mib: float | None, measured: dict[str, float]) -> float | None:
    """What the trial is expected to use on each of its GPUs, MiB; None when nothing tells."""
    from grid.spec.expand import canonical_config

    fraction = trial.config.get("memory_fraction")
    capped = fraction * card_mib + CONTEXT_MIB if fraction is not None and card_mib else None
    seen = measured.get(canonical_config(trial.config))
    known = [v for v in (capped, seen) if v is not None]
    return max(known) if known else None


def fits(
    trial: Trial,
    need_mib: float | None,
    card_mib: float | None,
    tenants: Iterable[Tenant],
    trials_per_gpu: int,
    busy_pct: float = 0.0,
) -> bool:
    """May the trial start on a GPU that already runs `tenants`? Only where their memory fits the card
    and their expected busy shares (NVML's utilisation of earlier rows of each config; unknown: none)
    add up to no more than the GPU's time."""
    tenants = list(tenants)
    if not tenants:
        return True
    if trial.exclusive or any(t.exclusive for t in tenants) or len(tenants) >= MAX_PER_GPU:
        return False
    if busy_pct + sum(t.busy_pct for t in tenants) > BUSY_LIMIT_PCT:
        return False  # together they would keep the GPU busier than it can be: sharing would only slow them
    if card_mib is None:  # no memory figure to pack by: a count
        return len(tenants) < trials_per_gpu
    if need_mib is None or any(t.footprint_mib is None for t in tenants):
        return False  # an unknown footprint may need the whole card
    return sum(t.footprint_mib or 0.0 for t in tenants) + need_mib <= card_mib - margin_mib(card_mib)
