"""The processes of a local Ray that a driver starts, recorded so that none outlives a driver that
was killed, by whatever signal (`kill -9` too): a watcher process of the driver's (in a session of
its own, so that the driver's death does not take it along) checks every half second that the driver
still runs, and ends what its local Ray left within seconds of its death (by the recorded pids and
their start times, and their children, never by name: other Ray clusters on the machine are not
ours to stop). The next driver on the machine ends what a dead one left too, should its watcher
have died with it.

A record is `<state dir>/local-ray/<driver pid>.json`; a driver that ends normally removes its own,
and its watcher, seeing that, leaves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
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
        self.watcher: subprocess.Popen | None = None

    def record(self) -> None:
        """Note every process the local Ray runs now (again after its workers and agents started)."""
        known: dict[int, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            known = {p["pid"]: p for p in json.loads(self.path.read_text())["processes"]}
        mine = self.before | ({self.watcher.pid} if self.watcher else set())
        known.update({pid: info for pid, info in _descendants().items() if pid not in mine})
        driver = psutil.Process()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"driver": {"pid": driver.pid, "created": driver.create_time()}, "processes": list(known.values())}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)  # the watcher reads it whole
        if self.watcher is None:
            self.watcher = subprocess.Popen(
                [sys.executable, "-m", "grid.scheduler.localray", str(self.path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a signal to the driver's process group leaves it running
            )

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self.watcher is not None:
            self.watcher.terminate()  # nothing left to watch
            self.watcher.wait()


def _stop(procs: list[psutil.Process], grace_s: float) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, slow = psutil.wait_procs(procs, timeout=grace_s)
    for proc in slow:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(slow, timeout=grace_s)


def _end(doc: dict[str, Any], grace_s: float) -> list[psutil.Process]:
    """End a dead driver's recorded Ray processes, then whatever of their children outlived them;
    returns those that ran. The recorded ones go first: a trial's process is ended by its worker's
    death (it then writes no row, and the next run re-runs the attempt), not told to stop before it."""
    found = [living(info["pid"], info["created"]) for info in doc["processes"]]
    recorded = [proc for proc in found if proc is not None and proc.pid != os.getpid()]
    children: dict[int, psutil.Process] = {}
    for proc in recorded:
        with contextlib.suppress(psutil.Error):
            children.update({child.pid: child for child in proc.children(recursive=True)})
    children.pop(os.getpid(), None)  # the watcher itself
    _stop(recorded, grace_s)
    orphans = [child for child in children.values() if child.is_running()]
    for child in orphans:  # their parents are gone: no one is left to end them more gently
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(orphans, timeout=grace_s)
    return recorded


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
        leftovers = _end(doc, grace_s)
        if leftovers:
            log.warning(
                "[grid] ended %d Ray process(es) that a killed driver (pid %s) left behind: %s",
                len(leftovers),
                doc["driver"]["pid"],
                ", ".join(sorted({info["name"] for info in doc["processes"]})),
            )
        ended += len(leftovers)
        record.unlink(missing_ok=True)
    return ended


def watch(record: Path, every_s: float = 0.5, grace_s: float = 3.0) -> None:
    """The watcher: while the record is there and its driver runs, wait; once the driver is gone,
    end its local Ray. A record removed means the driver stopped its Ray itself."""
    doc: dict[str, Any] | None = None
    while True:
        try:
            doc = json.loads(record.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            pass  # being replaced: the last whole one stands
        if doc is not None and living(doc["driver"]["pid"], doc["driver"]["created"]) is None:
            _end(doc, grace_s)
            record.unlink(missing_ok=True)
            return
        time.sleep(every_s)


if __name__ == "__main__":
    watch(Path(sys.argv[1]))
