"""Which trials ran on the same GPU at the same time as an attempt (its row's `shared_with`).

Every attempt leaves a small file per GPU it runs on, next to the GPU locks (gpulock.py): its
sweep, trial, process and start time, and its end time once it ended. When the attempt ends, the
files of its GPUs name every attempt whose run overlapped its own, whichever started first, from
any sweep or driver on the node. GPUs without an NVML identity (fake ones) are named by their
worker instead. A file left by a process that died is ignored and removed; ended ones are removed
after a day.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path

from grid.trial.gpulock import LOCK_DIR

KEEP_S = 86400.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        `sweep/trial`), sorted."""
        start, end = self.entry["start"], self.entry["end"] or time.time()
        found: set[str] = set()
        for folder in self.dirs:
            for path in folder.glob("*.json"):
                if path.name == self.name:
                    continue
                try:
                    other = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue  # being replaced, or gone
                if other["end"] is None and not _alive(other["pid"]):
                    path.unlink(missing_ok=True)  # its process died: it no longer runs
                    continue
                if other["end"] is not None and other["end"] < time.time() - KEEP_S:
                    path.unlink(missing_ok=True)
                    continue
                if other["start"] < end and (other["end"] is None or other["end"] > start):
                    same = other["sweep"] == self.sweep
                    found.add(other["trial"] if same else f"{other['sweep']}/{other['trial']}")
        found.discard(self.trial_id)
        return sorted(found)
