"""Rows, logs and trial folders kept on this machine's disk until the results store takes them.

A finished attempt's row is first written here (durably), then to the store, retried with
backoff for `retry_s` (the store's one policy: backend/retry.py); only when the store has it is
the local copy dropped. A store that stays down therefore loses nothing: the rows wait here, and
the next `grid run` of the sweep writes them first (`flush`), so no finished trial runs twice
because of storage. A log or a trial folder the store would not take is kept here too (`keep_log`,
`keep_folder`; the row's notes say so) and written by the end of the run or the next one. The
spool lives in the state folder (`--state-dir`, default ~/.cache/gpu-grid), one folder per results
location, and is itself a local storage backend: its files are written whole and durably.

    sweep=<name>/<trial_id>-<attempt>.write|.create   a row (.create: only if the attempt has none)
    sweep=<name>/_logs/<trial_id>-<attempt>.log        a log
    sweep=<name>/_trials/<trial_id>-<attempt>/         an attempt's trial folder
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from grid.results.backend import open_backend
from grid.results.backend.retry import RETRY_S, Retry, describe
from grid.results.layout import attempt_of
from grid.results.row import Row
from grid.results.store import ResultStore

__all__ = ["RETRY_S", "Delivered", "DeliveryOptions", "Spool", "default_state_dir", "deliver"]
log = logging.getLogger("grid")


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

    def _folder(self, sweep: str, kind: str = "") -> Path:
        self.disk.make_folder(str(self.dir))
        (self.dir / "results-uri").write_text(self.store.uri + "\n")
        folder = self.dir / f"sweep={sweep}" / kind
        self.disk.make_folder(str(folder))
        return folder

    def keep(self, sweep: str, trial_id: str, attempt: int, data: bytes, create: bool) -> Path:
        """`create`: write it only if the attempt has no row yet (a driver's `lost` row)."""
        self._folder(sweep)
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

    def keep_log(self, local_file: str, sweep: str, trial_id: str, attempt: int) -> Path:
        """A log the store would not take, moved here until `flush` writes it."""
        path = self._folder(sweep, "_logs") / f"{trial_id}-{attempt}.log"
        shutil.move(local_file, path)
        return path

    def keep_folder(self, local_folder: str, sweep: str, trial_id: str, attempt: int) -> Path:
        """An attempt's trial folder the store would not take, moved here until `flush` writes it."""
        path = self._folder(sweep, "_trials") / f"{trial_id}-{attempt}"
        shutil.rmtree(path, ignore_errors=True)
        shutil.move(local_folder, path)
        return path

    def kept_files(self, sweep: str | None = None) -> list[Path]:
        """Logs and trial folders waiting for the store, a trial's folders in the order of their attempts."""
        found = list(self.dir.glob(f"sweep={sweep or '*'}/_logs/*.log"))
        folders = [p for p in self.dir.glob(f"sweep={sweep or '*'}/_trials/*") if p.is_dir() and attempt_of(p.name)]
        return sorted(found) + sorted(folders, key=lambda p: (p.parent.parent.name, *attempt_of(p.name)))  # type: ignore[misc]

    def put_file(self, path: Path) -> None:
        """Write one kept log or trial folder to the store, then drop the local copy."""
        sweep = path.parent.parent.name.split("=", 1)[1]
        trial_id, attempt = attempt_of(path.stem if path.suffix == ".log" else path.name) or ("", 0)
        if path.parent.name == "_logs":
            self.store.backend.upload(str(path), self.store.layout.log(sweep, trial_id, attempt))
            path.unlink()
        else:
            self.store.backend.copy_up(str(path), self.store.layout.trial_folder(sweep, trial_id))
            shutil.rmtree(path)

    def flush(self, sweep: str | None = None) -> tuple[int, list[str]]:
        """Every kept row of the sweep written to the store, then its kept logs and trial folders:
        (how many rows, one error per row it could not write). Once the store refused one (after its
        retries), the rest wait for the next run rather than each waiting out the retries again."""
        written, errors = 0, []
        rows = self.pending(sweep)
        for i, path in enumerate(rows):
            try:
                self.put(path)
                written += 1
            except Exception as exc:  # the store is still down: they stay for the next run
                errors += [f"{p}: {describe(exc)}" for p in rows[i:]]
                return written, errors
        for path in self.kept_files(sweep):
            try:
                self.put_file(path)
            except Exception as exc:
                log.warning("[grid] %s stays on this machine until the next run (%s)", path, describe(exc))
                break
        return written, errors


def deliver(
    spool: Spool,
    row: Row,
    data: bytes,
    retry_s: float,
    create: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivered:
    """Keep the row locally, then hand it to the store through the store's retry policy for
    `retry_s` seconds; here any fault is waited for (a full or read-only disk may be freed too)."""
    path = spool.keep(row.sweep, row.trial_id, row.attempt, data, create)
    what = f"the row of {row.trial_id}-{row.attempt}"
    try:
        return Delivered(row, existed=not Retry(retry_s, sleep).call(lambda: spool.put(path), what, lambda exc: True))
    except Exception as exc:  # storage faults: read-only, full, unreachable, refused...
        return Delivered(row, kept=str(path), store_error=describe(exc))
