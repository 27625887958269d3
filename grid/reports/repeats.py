"""How a run's repeats ran: interleaved with the other configs or back to back, and on how many
devices. Repeats that share their moment and their device share its state (clocks, temperature,
neighbours), so their spread says little about the next run; the reports say which it was."""

from __future__ import annotations

import collections
import itertools
from typing import Any

from grid.reports.table import trial_config
from grid.spec.expand import canonical_config


def _device(row: dict[str, Any]) -> str:
    return ",".join(row.get("gpu_ids") or row.get("workers") or ["?"])


def repeats_text(rows: list[dict[str, Any]]) -> str | None:
    """One line on the repeats of these rows (a run's latest attempts); None without repeats."""
    # in the order the driver handed them out (its one thread): the processes' own starts race
    started = sorted(
        (r for r in rows if (r.get("dispatched_at") or r.get("started_at")) is not None),
        key=lambda r: r.get("dispatched_at") or r["started_at"],
    )
    keys = [canonical_config(trial_config(r)) for r in started]
    counts = collections.Counter(keys)
    repeated = {k for k, n in counts.items() if n > 1}
    if not repeated:
        return None
    adjacent = sum(1 for a, b in itertools.pairwise(keys) if a == b and a in repeated)
    devices: dict[str, set[str]] = collections.defaultdict(set)
    for key, row in zip(keys, started):
        devices[key].add(_device(row))
    spread = sorted(len(devices[k]) for k in repeated)
    per_config = max(counts[k] for k in repeated)
    order = (
        "interleaved with the other configs (never back to back)"
        if adjacent == 0
        else f"back to back {adjacent} time(s) in {len(started)} starts"
    )
    everywhere = sorted({d for k in repeated for d in devices[k]})
    where = (
        f"all on {everywhere[0]}"
        if len(everywhere) == 1
        else f"each config's on {spread[0]}-{spread[-1]} of {len(everywhere)} devices"
        if spread[0] != spread[-1]
        else f"each config's on {spread[0]} of {len(everywhere)} devices"
    )
    return f"repeats: up to {per_config} per config, {order}; {where}"
