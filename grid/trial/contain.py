"""Every process a trial starts ends with it, whatever session or process group it moved to.

Where the machine offers a writable cgroup v2 hierarchy, each attempt gets a cgroup of its own:
the trial's first process joins it before it runs anything (the exec shim writes itself into
`cgroup.procs`), every descendant stays in it, and when the trial is over `cgroup.kill` ends
whatever is left. Elsewhere the worker becomes a child subreaper (orphans of its trials are
re-parented to it instead of init) and remembers every process it saw in the trial's tree: what
is still alive of those, and orphans it adopted during the attempt, are ended. Either way the row
counts the strays that were ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
import uuid
from pathlib import Path
from typing import ClassVar

import psutil

from grid.processes import living
from grid.protocol import Env
from grid.trial.measure import process_tree

_PR_SET_CHILD_SUBREAPER = 36


def _cgroup2_dir() -> Path | None:
    """This process's own cgroup, in the (first) cgroup v2 hierarchy mounted, if any."""
    try:
        own = next(
            line.split("::", 1)[1].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
        mounts = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    except (OSError, StopIteration):
        return None
    for fields in mounts:
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2":
            root, mount = fields[3], fields[4]
            relative = os.path.relpath(own, root) if root != "/" else own.lstrip("/")
            path = Path(mount) / relative
            if path.is_dir():
                return path
    return None


class CgroupContainment:
    method = "cgroup v2"

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, name: str) -> CgroupContainment | None:
        parent = _cgroup2_dir()
        if parent is None:
            return None
        path = parent / f"gpu-grid-{name}-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
        except OSError:
            return None
        return cls(path)

    @property
    def join_file(self) -> str:
        """What the trial's first process writes its pid into before it runs anything."""
        return str(self.path / "cgroup.procs")

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def tree(self, root: int) -> list[int]:
        """Every process of the trial: the cgroup holds them all, moved sessions included."""
        return self.pids() or [root]

    def observe(self, tree: list[int]) -> None:
        pass

    def end(self, deadline_s: float = 5.0) -> int:
        """End every process still in the cgroup; returns how many there were."""
        strays = self.pids()
        if strays:
            try:
                (self.path / "cgroup.kill").write_text("1")
            except OSError:  # kernels before 5.14: one by one
                for pid in strays:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + deadline_s
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.02)
        with contextlib.suppress(OSError):
            self.path.rmdir()
        return len(strays)


class ReaperContainment:
    method = "subreaper and the processes seen"
    _armed = False
    roots: ClassVar[set[int]] = set()  # the trial processes this process started and waits for itself

    def __init__(self, trial_path: str) -> None:
        self.trial_path = trial_path  # GRID_TRIAL of this attempt: how its adopted orphans are known
        self.seen: dict[int, float] = {}  # pid -> its start time, so a reused pid is never ended
        ReaperContainment.arm()

    @classmethod
    def arm(cls) -> None:
        """Orphans of this process's descendants come to it, not to init: once per process."""
        if not cls._armed:
            with contextlib.suppress(Exception):
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            cls._armed = True

    join_file = "-"

    def tree(self, root: int) -> list[int]:
        return process_tree(root)

    def observe(self, tree: list[int]) -> None:
        for pid in tree:
            if pid not in self.seen:
                with contextlib.suppress(psutil.Error):
                    self.seen[pid] = psutil.Process(pid).create_time()

    def _alive(self) -> list[psutil.Process]:
        out = []
        for pid, created in self.seen.items():
            proc = living(pid, created)
            if proc is not None:
                out.append(proc)
        # psutil's start times are comparable with each other, not with time.time(): orphans are
        # younger than the trial's first process, which was seen first.
        started = min(self.seen.values(), default=0.0)
        adopted = [
            child
            for child in psutil.Process().children()
            if child.pid not in self.seen and child.create_time() >= started and self._ours(child)
        ]
        return out + adopted

    def _ours(self, proc: psutil.Process) -> bool:
        """An orphan this worker adopted that belongs to this attempt (not to another one it runs)."""
        with contextlib.suppress(psutil.Error):
            return proc.environ().get(Env.TRIAL) == self.trial_path
        return False

    def end(self, deadline_s: float = 5.0) -> int:
        strays = self._alive()
        for proc in strays:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(strays, timeout=deadline_s)
        _reap_adopted()
        return len(strays)


def _reap_adopted() -> None:
    """Collect the exit status of orphans this process adopted that have ended (zombies), without
    touching the children it started itself (their Popen objects wait for them)."""
    own = ReaperContainment.roots
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error, ChildProcessError):
            if child.pid not in own and child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)


Containment = CgroupContainment | ReaperContainment


def contain(name: str, trial_path: str, prefer: str = "auto") -> Containment:
    """A cgroup where one can be made (prefer "auto" or "cgroup"), else the subreaper."""
    if prefer in ("auto", "cgroup"):
        cgroup = CgroupContainment.create(name)
        if cgroup is not None:
            return cgroup
    return ReaperContainment(trial_path)
