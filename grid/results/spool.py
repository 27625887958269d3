"""Rows kept on this machine's disk until the results store takes them.

A finished attempt's row is first written here (durably), then to the store, retried with
backoff for `retry_s`; only when the store has it is the local copy dropped. A store that stays
down therefore loses nothing: the rows wait here, and the next `grid run` of the sweep writes
them first (`flush`), so no finished trial runs twice because of storage. The spool lives in the
state folder (`--state-dir`, default ~/.cache/gpu-grid), one folder per results location, and is
itself a local storage backend: its files are written whole and durably.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from grid.results.backend import open_backend
from grid.results.row import Row
from grid.results.store import ResultStore

log = logging.getLogger("grid")
_MAX_DELAY_S = 15.0
RETRY_S = 60.0  # how long a store that refuses rows is retried before they stay on this disk


def default_state_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "gpu-grid")


@dataclass(frozen=True)
class DeliveryOptions:
    """Where a machine keeps what the store has not taken yet, and how long to keep trying."""

    state_dir: str = field(default_factory=default_state_dir)
    retry_s: float = RETRY_S


@dataclass
class Delivered:
    """A row handed to the store: `kept` names the local copy when the store did not take it."""

    row: Row
    kept: str | None = None
    store_error: str | None = None
    existed: bool = False  # a create found the attempt's row already there (and left it)

    @property
    def stored(self) -> bool:
        return self.kept is None


class Spool:
    def __init__(self, store: ResultStore, state_dir: str):
        key = hashlib.sha256(store.uri.encode()).hexdigest()[:16]
        self.store = store
        self.dir = Path(state_dir) / "spool" / key
        self.disk = open_backend(str(self.dir))  # this machine's disk

    def keep(self, sweep: str, trial_id: str, attempt: int, data: bytes, create: bool) -> Path:
        """`create`: write it only if the attempt has no row yet (a driver's `lost` row)."""
        self.disk.make_folder(str(self.dir))
        (self.dir / "results-uri").write_text(self.store.uri + "\n")
        path = self.dir / f"sweep={sweep}" / f"{trial_id}-{attempt}.{'create' if create else 'write'}"
        self.disk.write(str(path), data)
        return path

    def pending(self, sweep: str | None = None) -> list[Path]:
        pattern = f"sweep={sweep}/*" if sweep else "sweep=*/*"
        return sorted(p for p in self.dir.glob(pattern) if p.suffix in (".write", ".create"))

    def put(self, path: Path) -> bool:
        """Write one kept row to the store, then drop the local copy. False: a create found the
        attempt's row already there."""
        sweep = path.parent.name.split("=", 1)[1]
        trial_id, _, attempt = path.stem.rpartition("-")
        data = self.disk.read(str(path))
        written = True
        if path.suffix == ".create":
            written = self.store.create_encoded(sweep, trial_id, int(attempt), data)
        else:
            self.store.write_encoded(sweep, trial_id, int(attempt), data)
        self.disk.delete(str(path))
        return written

    def flush(self, sweep: str | None = None) -> tuple[int, list[str]]:
        """Every kept row of the sweep written to the store: (how many, the errors of those it refused)."""
        written, errors = 0, []
        for path in self.pending(sweep):
            try:
                self.put(path)
                written += 1
            except Exception as exc:  # the store is still down: they stay for the next run
                errors.append(f"{path}: {type(exc).__name__}: {exc}")
        return written, errors


def deliver(
    spool: Spool,
    row: Row,
    data: bytes,
    retry_s: float,
    create: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivered:
    """Keep the row locally, then hand it to the store with backoff for `retry_s` seconds."""
    path = spool.keep(row.sweep, row.trial_id, row.attempt, data, create)
    deadline, delay, error = time.monotonic() + retry_s, 0.5, ""
    while True:
        try:
            return Delivered(row, existed=not spool.put(path))
        except Exception as exc:  # storage faults: read-only, full, unreachable, refused...
            error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() + delay > deadline:
            break
        log.warning(
            "[grid] results store refused %s-%s (%s); retrying in %.1f s", row.trial_id, row.attempt, error, delay
        )
        sleep(delay)
        delay = min(delay * 2, _MAX_DELAY_S)
    return Delivered(row, kept=str(path), store_error=error)
