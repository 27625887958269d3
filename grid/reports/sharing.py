"""What the trials that shared a GPU shared it with, in words: for the report's answers (which leave
them out) and for `grid compare`'s advice (which names what actually differs between two runs)."""

from __future__ import annotations

import collections
from typing import Any


def shared(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("shared_with")]


def sharing_text(rows: list[dict[str, Any]]) -> str:
    """'2 packed with trials of their own sweep (exclusive: false), 1 beside sweep x's trials, 1 beside
    processes outside gpu-grid (NVML pids 123)' for the rows that shared a GPU."""
    kinds: collections.Counter[str] = collections.Counter()
    sweeps: set[str] = set()
    pids: set[str] = set()
    for row in shared(rows):
        entries = row["shared_with"]
        foreign = [e.split(":", 1)[1] for e in entries if e.startswith("pid:")]
        others = {e.split("/", 1)[0] for e in entries if "/" in e and not e.startswith("pid:")}
        own = [e for e in entries if "/" not in e and not e.startswith("pid:")]
        if own:
            kinds["own" if row.get("exclusive") is False else "own-exclusive"] += 1
        if others:
            kinds["other"] += 1
            sweeps |= others
        if foreign:
            kinds["foreign"] += 1
            pids |= set(foreign)
    words = {
        "own": "packed with trials of their own sweep (exclusive: false in the spec; true gives each its GPU)",
        "own-exclusive": "beside trials of their own sweep (search probes, or a GPU two drivers of the sweep used)",
        "other": f"beside trials of another sweep on the same GPU ({', '.join(sorted(sweeps))})",
        "foreign": f"beside processes outside gpu-grid (NVML pids {', '.join(sorted(pids, key=int))})",
    }
    return ", ".join(f"{n} {words[k]}" for k, n in kinds.items())
