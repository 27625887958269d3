"""The processes of a local Ray that a driver starts, recorded so that none outlives a driver that
was killed: the next driver on the machine ends what a dead one left (by the recorded pids and
their start times, never by name: other Ray clusters on the machine are not ours to stop).

A record is `<state dir>/local-ray/<driver pid>.json`; a driver that ends normally removes its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import psutil

from grid.processes import living

log = logging.getLogger("grid")


def _folder(state_dir: str) -> Path:
    return Path(state_dir) / "local-ray"


def _descendants() -> dict[int, dict[str, Any]]:
    out = {}
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            out[proc.pid] = {"pid": proc.pid, "created": proc.create_time(), "name": proc.name()}
    return out


class LocalRay:
    """What this driver's local Ray started: the processes that were not there before it."""

    def __init__(self, state_dir: str):
        self.path = _folder(state_dir) / f"{os.getpid()}.json"
        self.before = set(_descendants())

    def record(self) -> None:
        """Note every process the local Ray runs now (again after its workers and agents started)."""
        known: dict[int, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            known = {p["pid"]: p for p in json.loads(self.path.read_text())["processes"]}
        known.update({pid: info for pid, info in _descendants().items() if pid not in self.before})
        driver = psutil.Process()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"driver": {"pid": driver.pid, "created": driver.create_time()}, "processes": list(known.values())}
        self.path.write_text(json.dumps(doc))

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def end_leftovers(state_dir: str, grace_s: float = 3.0) -> int:
    """End the Ray processes of local drivers that died without stopping them; returns how many."""
    ended = 0
    for record in sorted(_folder(state_dir).glob("*.json")):
        try:
            doc = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if living(doc["driver"]["pid"], doc["driver"]["created"]) is not None:
            continue  # that driver still runs its sweep
        found = [living(info["pid"], info["created"]) for info in doc["processes"]]
        leftovers = [proc for proc in found if proc is not None]
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, slow = psutil.wait_procs(leftovers, timeout=grace_s)
        for proc in slow:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(slow, timeout=grace_s)
        if leftovers:
            log.warning(
                "[grid] ended %d Ray process(es) that a killed driver (pid %s) left behind: %s",
                len(leftovers),
                doc["driver"]["pid"],
                ", ".join(sorted({info["name"] for info in doc["processes"]})),
            )
        ended += len(leftovers)
        record.unlink()
    return ended
