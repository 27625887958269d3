"""A trial's output log, read after it ended: its last lines (the evidence of a failure) and the
spec's `metrics:` patterns over its lines: the last match wins; all matches are kept as a
per-epoch series when there is one per epoch."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from grid.spec.patterns import MetricPattern

_SPLIT = re.compile(rb"\r\n|\r|\n")
_TAIL_BYTES = 4000


def log_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def lines(path: str, offset: int = 0) -> Iterator[str]:
    """The file's lines from `offset` (\\n, \\r\\n and a progress bar's \\r all end a line)."""
    with open(path, "rb") as f:
        f.seek(offset)
        rest = b""
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            parts = _SPLIT.split(rest + chunk)
            rest = parts.pop()
            for part in parts:
                yield part.decode(errors="replace")
        if rest:
            yield rest.decode(errors="replace")


@dataclass
class Scan:
    values: dict[str, Any]
    series: dict[str, list]
    notes: list[str]


def scan(path: str, offset: int, patterns: dict[str, MetricPattern], epochs: int | None) -> Scan:
    """Every pattern over the output: the last match wins; all matches are kept as a per-epoch
    series when there is one per epoch."""
    compiled = {name: m.pattern for name, m in patterns.items() if m.pattern is not None}
    found: dict[str, list] = {name: [] for name in compiled}
    if compiled:
        try:
            for line in lines(path, offset):
                for name, pattern in compiled.items():
                    match = pattern.search(line)
                    if match:
                        found[name].append(patterns[name].value(match))
        except OSError as exc:
            return Scan({}, {}, [f"metrics: the output log could not be read ({exc})"])
    result = Scan({}, {}, [])
    for name, matches in found.items():
        if not matches:
            result.values[name] = None
            result.notes.append(f"metric {name}: pattern {compiled[name].pattern!r} matched no output line")
            continue
        result.values[name] = matches if name == "epoch_times" else matches[-1]
        numeric = all(isinstance(v, float) for v in matches)
        if numeric and epochs and epochs > 1 and len(matches) == epochs:
            result.series[name] = matches
    return result
