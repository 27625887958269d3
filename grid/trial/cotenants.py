"""Which trials ran on the same GPU at the same time as an attempt (its row's `shared_with`).

Every attempt leaves a small file per GPU it runs on, next to the GPU locks (gpulock.py): its
sweep, trial, process and start time, and its end time once it ended. When the attempt ends, the
files of its GPUs name every attempt whose run overlapped its own, whichever started first, from
any sweep or driver on the node. GPUs without an NVML identity (fake ones) are named by their
worker instead.

A file is removed as soon as no attempt can need it: its attempt ended and has read its own
co-tenants (`read`), and every attempt still running or still to read on that GPU started after it
ended. A file of a process that died is removed at once. (Ended files used to be kept for a day:
each attempt then read every file of the day, ~1,100 per fake GPU after a few scheduler
benchmarks, tens of milliseconds per trial.)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

from grid.processes import living
from grid.trial.gpulock import LOCK_DIR

STALE_S = 86400.0


def _write(path: Path, entry: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, path)


class Tenancy:
    """This attempt's presence on its GPUs, and who else was there while it ran."""

    def __init__(self, keys: list[str], sweep: str, trial_id: str, attempt: int, lock_dir: Path = LOCK_DIR):
        self.dirs = [lock_dir / "tenants" / re.sub(r"[^A-Za-z0-9_.-]", "_", k) for k in keys]
        self.sweep, self.trial_id = sweep, trial_id
        self.name = f"{os.getpid()}-{trial_id}-{attempt}.json"
        self.entry = {"sweep": sweep, "trial": trial_id, "pid": os.getpid(), "start": time.time(), "end": None}

    def __enter__(self) -> Tenancy:
        for folder in self.dirs:
            folder.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                os.chmod(folder, 0o1777)
            _write(folder / self.name, self.entry)
        return self

    def __exit__(self, *exc: object) -> None:
        self.entry["end"] = time.time()
        for folder in self.dirs:
            with contextlib.suppress(OSError):
                _write(folder / self.name, self.entry)

    def others(self) -> list[str]:
        """The trials whose runs overlapped this one's on any of its GPUs (another sweep's as
        `sweep/trial`), sorted. Called once, after the attempt ended."""
        start, end = self.entry["start"], self.entry["end"] or time.time()
        found: set[str] = set()
        for folder in self.dirs:
            entries = self._read(folder)
            for other in entries.values():
                if other["start"] < end and (other["end"] is None or other["end"] > start):
                    same = other["sweep"] == self.sweep
                    found.add(other["trial"] if same else f"{other['sweep']}/{other['trial']}")
            self._forget_finished(folder, entries)
        self.entry["read"] = True
        for folder in self.dirs:
            with contextlib.suppress(OSError):
                _write(folder / self.name, self.entry)
        found.discard(self.trial_id)
        return sorted(found)

    def _read(self, folder: Path) -> dict[Path, dict]:
        """The other attempts' entries in a GPU's folder; those of processes that died are removed."""
        entries: dict[Path, dict] = {}
        for path in folder.glob("*.json"):
            if path.name == self.name:
                continue
            try:
                other = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # gone meanwhile
            if not other.get("read") and living(other["pid"]) is None:
                path.unlink(missing_ok=True)  # its process died: it no longer runs nor reads
                continue
            if other["end"] is not None and other["end"] < time.time() - STALE_S:
                path.unlink(missing_ok=True)  # never read (older gpu-grid, a reused pid): not kept forever
                continue
            entries[path] = other
        return entries

    def _forget_finished(self, folder: Path, entries: dict[Path, dict]) -> None:
        """Remove the entries no attempt can need any more: read by their own attempt, and ended
        before every attempt that is still running or still to read (this one included) started."""
        pending = [e["start"] for e in entries.values() if not e.get("read")]
        since = min([self.entry["start"], *pending])
        for path, other in entries.items():
            if other.get("read") and other["end"] is not None and other["end"] < since:
                path.unlink(missing_ok=True)
