"""A history of accepted runs: the baseline of `grid compare`, local or on any backend.

    <history>/runs/<UTC time>/sweep=<name>/*.parquet     one accepted run each, a results location

`grid compare --accept` adds a run (its rows, copied whole) once it is judged and complete, and
keeps the newest `keep`. A results location with no `runs/` folder (a baseline of an older
gpu-grid, or one run copied by hand) is a history of that one run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from grid.errors import UsageError
from grid.results.backend import open_backend
from grid.results.store import ResultStore

RUNS = "runs"
_NAME = re.compile(r"^\d{8}T\d{6}(\.\d+)?Z$")


@dataclass(frozen=True)
class HistoryRun:
    name: str  # its UTC time, or "baseline" for a single-run location
    uri: str


def child_uri(uri: str, *parts: str) -> str:
    """A location under `uri`: the parts joined to its path, its query (an S3 endpoint...) kept."""
    path, sep, query = uri.partition("?")
    return "/".join([path.rstrip("/"), *parts]) + sep + query


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def history_runs(uri: str, last: int) -> list[HistoryRun]:
    """The newest `last` accepted runs, oldest first ([] where nothing is there)."""
    backend = open_backend(uri)
    names = sorted(e.name for e in backend.entries(_join(backend.root, RUNS)) if not e.is_file and _NAME.match(e.name))
    if names:
        return [HistoryRun(n, child_uri(uri, RUNS, n)) for n in names[-last:]]
    return [HistoryRun("baseline", uri)] if ResultStore(uri).sweeps() else []


def accept(history: str, current: str, sweep: str, keep: int, now: datetime | None = None) -> str:
    """Copy the current run's rows into the history as its newest run; drop all but the newest `keep`.
    Returns the new run's name."""
    target = open_backend(history)
    if ResultStore(history).sweeps():
        raise UsageError(
            f"--accept: {history} is one run's results, not a history; start a history elsewhere (a new "
            f"folder) or move it under {RUNS}/<UTC time>/ there"
        )
    name = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S.%fZ")
    source = ResultStore(current)
    for path in source.files(sweep):
        relative = path[len(source.backend.root) :].lstrip("/")
        target.write(_join(target.root, RUNS, name, relative), source.backend.read(path))
    runs = history_runs(history, 10**9)
    for old in runs[: max(0, len(runs) - keep)]:
        target.delete_folder(_join(target.root, RUNS, old.name))
    return name


def check_keep(keep: int) -> int:
    if keep < 1:
        raise UsageError(
            f"--history: received {keep}, expected an integer >= 1 (accepted runs kept and judged against)"
        )
    return keep
