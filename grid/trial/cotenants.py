"""Which trials ran on the same GPU at the same time as an attempt (its row's `shared_with`).

Only real sharing counts, and only what another user cannot forge:

- a real GPU (an NVML identity): every attempt of this user leaves a small file per GPU it runs on,
  in a folder of this user's alone (`$TMPDIR/gpu-grid-<uid>/tenants`, mode 0700, refused when it is
  someone else's or others may write in it): its sweep, trial, process and start time, and its end
  time once it ended. When the attempt ends, the files of its GPUs name every attempt whose run
  overlapped its own, whichever started first, from any sweep or driver of this user on the node.
  Other users' processes on the GPU are NVML's to see (attempt.py adds `gpu_foreign_pids`).
- a fake GPU (`--num-gpus` without NVML): the attempts its own worker process ran on it together
  (kept in memory: the fake GPUs of two drivers are not one device, whatever their names);
- a CPU slot: nothing; it has no GPU to share.

A file is removed as soon as no attempt can need it: its attempt ended and has read its own
co-tenants (`read`), and every attempt still running or still to read on that GPU started after it
ended. A file of a process that died is removed at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Protocol

from grid.errors import GridError
from grid.processes import living

STALE_S = 86400.0


def own_folder(base: Path | None = None) -> Path:
    """This user's tenancy folder, made 0700; someone else's (or one others may write in) is refused."""
    root = base or Path(tempfile.gettempdir()) / f"gpu-grid-{os.getuid()}"
    for folder in (root, root / "tenants"):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=0o700)
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
            raise GridError(
                f"{folder} is not a folder of this user's alone (owner uid {info.st_uid}, mode "
                f"{stat.filemode(info.st_mode)}): gpu-grid keeps which of your trials shared a GPU there and "
                f"trusts no one else's records; remove it, or point TMPDIR elsewhere"
            )
    return root / "tenants"


class _Place(Protocol):
    def write(self, name: str, entry: dict) -> None: ...
    def entries(self, own: str) -> dict[str, dict]: ...
    def remove(self, name: str) -> None: ...


class _Files:
    """A real GPU's entries: one file per attempt in this user's folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def write(self, name: str, entry: dict) -> None:
        self.folder.mkdir(mode=0o700, exist_ok=True)
        tmp = self.folder / (name + ".tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, self.folder / name)

    def entries(self, own: str) -> dict[str, dict]:
        """The other attempts' entries; those of processes that died are removed."""
        found: dict[str, dict] = {}
        for path in self.folder.glob("*.json"):
            if path.name == own:
                continue
            try:
                other = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # gone meanwhile
            if not other.get("read") and living(other["pid"]) is None:
                path.unlink(missing_ok=True)  # its process died: it no longer runs nor reads
                continue
            if other["end"] is not None and other["end"] < time.time() - STALE_S:
                path.unlink(missing_ok=True)  # never read (a reused pid): not kept forever
                continue
            found[path.name] = other
        return found

    def remove(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)


_FAKE: dict[str, dict[str, dict]] = {}  # a fake GPU's worker -> its attempts' entries, in this process
_FAKE_LOCK = threading.Lock()


class _Memory:
    """A fake GPU's entries: in the process of the worker that owns it."""

    def __init__(self, key: str):
        self.key = key

    def write(self, name: str, entry: dict) -> None:
        with _FAKE_LOCK:
            _FAKE.setdefault(self.key, {})[name] = dict(entry)

    def entries(self, own: str) -> dict[str, dict]:
        with _FAKE_LOCK:
            return {n: dict(e) for n, e in _FAKE.get(self.key, {}).items() if n != own}

    def remove(self, name: str) -> None:
        with _FAKE_LOCK:
            _FAKE.get(self.key, {}).pop(name, None)


def places(gpu_uuids: list[str], fake_gpus: list[str], folder: Path | None = None) -> list[_Place]:
    """Where an attempt's presence is kept: its real GPUs (by NVML UUID) in this user's folder, else
    its fake GPUs (by worker) in this process; none on a CPU slot."""
    if gpu_uuids:
        base = folder or own_folder()
        return [_Files(base / re.sub(r"[^A-Za-z0-9_.-]", "_", k)) for k in gpu_uuids]
    return [_Memory(name) for name in fake_gpus]


class Tenancy:
    """This attempt's presence on its GPUs, and who else was there while it ran."""

    def __init__(self, where: list[_Place], sweep: str, trial_id: str, attempt: int):
        self.places = where
        self.sweep, self.trial_id = sweep, trial_id
        self.name = f"{os.getpid()}-{threading.get_ident()}-{trial_id}-{attempt}.json"
        self.entry = {"sweep": sweep, "trial": trial_id, "pid": os.getpid(), "start": time.time(), "end": None}

    def __enter__(self) -> Tenancy:
        for place in self.places:
            place.write(self.name, self.entry)
        return self

    def __exit__(self, *exc: object) -> None:
        self.entry["end"] = time.time()
        for place in self.places:
            with contextlib.suppress(OSError):
                place.write(self.name, self.entry)

    def others(self) -> list[str]:
        """The trials whose runs overlapped this one's on any of its GPUs (another sweep's as
        `sweep/trial`), sorted. Called once, after the attempt ended."""
        start, end = self.entry["start"], self.entry["end"] or time.time()
        found: set[str] = set()
        for place in self.places:
            entries = place.entries(self.name)
            for other in entries.values():
                if other["start"] < end and (other["end"] is None or other["end"] > start):
                    same = other["sweep"] == self.sweep
                    found.add(other["trial"] if same else f"{other['sweep']}/{other['trial']}")
            self._forget_finished(place, entries)
        self.entry["read"] = True
        for place in self.places:
            with contextlib.suppress(OSError):
                place.write(self.name, self.entry)
        found.discard(self.trial_id)
        return sorted(found)

    def _forget_finished(self, place: _Place, entries: dict[str, dict]) -> None:
        """Remove the entries no attempt can need any more: read by their own attempt, and ended
        before every attempt that is still running or still to read (this one included) started."""
        pending = [e["start"] for e in entries.values() if not e.get("read")]
        since = min([self.entry["start"], *pending])
        for name, other in entries.items():
            if other.get("read") and other["end"] is not None and other["end"] < since:
                place.remove(name)
