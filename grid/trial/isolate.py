"""Launch one trial as a child process in its own process group, watch it, and end it.

The parent owns the timeout and the CPU memory budget and kills the whole group; the child is
also tied to the launching thread (PR_SET_PDEATHSIG) so a lost worker does not leave it running.

One interpreter start per trial: a Python trial joins its cgroup and sets the parent-death signal
in its own bootstrap, before anything else runs (tasks/site/sitecustomize.py, GRID_PARENT_PID and
GRID_CGROUP_PROCS); any other program starts through `setpriv --pdeathsig` (a small C program),
after `sh` has put it in the cgroup. Only without setpriv does a Python shim exec the child.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from grid.protocol import Env
from grid.trial.contain import Containment, ReaperContainment, contain
from grid.trial.measure import RssSampler
from grid.trial.oom import AllocatorWatch
from grid.trial.warm import Parent, WarmChild

# Without setpriv: joins the trial's cgroup (argv[1], "-" for none) and sets "kill me when my
# parent thread exits", then becomes the real child. Done in a separate exec rather than
# preexec_fn, which is unsafe in a threaded parent (a Ray actor is one).
_SHIM = (
    "import ctypes, os, sys\n"
    "if sys.argv[1] != '-':\n"
    "    try:\n"
    "        open(sys.argv[1], 'w').write(str(os.getpid()))\n"
    "    except OSError as e:\n"
    "        print(f'[gpu-grid] could not join the trial cgroup: {e}', file=sys.stderr, flush=True)\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, 9)\n"
    "except Exception:\n"
    "    pass\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


_JOIN_THEN_EXEC = 'echo $$ > "$0" || echo "[gpu-grid] could not join the trial cgroup $0" >&2; exec "$@"'


def guarded(argv: list[str], join_file: str, bootstrapped: bool) -> tuple[list[str], dict[str, str]]:
    """The argv that starts `argv` in the trial's cgroup, tied to this thread, and the variables that
    ask a Python trial's bootstrap to do it itself (`bootstrapped`: the program runs gpu-grid's
    sitecustomize first)."""
    if bootstrapped:
        return argv, {Env.PARENT_PID: str(os.getpid()), Env.CGROUP_PROCS: join_file}
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return [sys.executable, "-S", "-c", _SHIM, join_file, *argv], {}
    inner = [setpriv, "--pdeathsig", "KILL", "--", *argv]
    return (inner if join_file == "-" else ["/bin/sh", "-c", _JOIN_THEN_EXEC, join_file, *inner]), {}


def _move(pid: int, join_file: str) -> None:
    """Put the child in its cgroup from outside too (a Python started with -S or -I skips its bootstrap)."""
    if join_file != "-":
        try:
            with open(join_file, "w") as f:
                f.write(str(pid))
        except OSError:
            pass  # the child ended already, or the cgroup is not ours to write: the child's own join reports it


class Sampler(Protocol):
    def sample(self, tree: list[int]) -> None:
        """Called every interval with the pids of the child's process tree."""


@dataclass
class ChildOutcome:
    pid: int
    exit_code: int | None
    signal: str | None
    timed_out: bool
    over_budget: bool
    started_at: float
    ended_at: float
    peak_rss_mib: float
    stray_killed: int = 0
    containment: str = ""
    start: str = "cold"  # warm: forked from a warm parent
    warm_modules: tuple[str, ...] = ()  # what that parent had imported
    notes: list[str] = field(default_factory=list)
    allocator_gave_up: str | None = None  # the allocator's line, where the watch ended the child on it

    @property
    def wall_s(self) -> float:
        return self.ended_at - self.started_at


def _kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def end_group(proc: subprocess.Popen | WarmChild, grace_s: float = 5.0) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after `grace_s`.

    The leader is reaped first: an unreaped (zombie) leader keeps its group "alive" to killpg.
    """
    if not _kill_group(proc.pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(0.05)
    _kill_group(proc.pid, signal.SIGKILL)


def run_child(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str | None,
    log_path: str,
    timeout_s: float,
    samplers: Sequence[Sampler] = (),
    interval_s: float = 0.02,
    memory_limit_mib: float | None = None,
    grace_s: float = 5.0,
    box: Containment | None = None,
    bootstrapped: bool = False,
    warm: Parent | None = None,
    watch: AllocatorWatch | None = None,
) -> ChildOutcome:
    """Run `argv` to completion, timeout or budget; leaves no process of it alive, whatever group
    or session it moved to (`box`: a cgroup, else the processes seen and orphans adopted).
    `bootstrapped`: argv is a Python that runs the trial bootstrap, which guards itself.
    `warm`: fork the child from this warm parent (argv[1:] is what runs), not a fresh interpreter.
    `watch`: end the child as soon as its allocator reports giving up on an allocation (a probe)."""
    rss = RssSampler()
    box = box or contain("child", env.get(Env.TRIAL, ""))
    cold_argv, guard_env = guarded(argv, box.join_file, bootstrapped)
    with open(log_path, "ab", buffering=0) as log:
        started = time.time()
        proc: subprocess.Popen | WarmChild | None = None
        notes: list[str] = []
        if warm is not None:
            try:
                proc = warm.fork(argv[1:], env, cwd or os.getcwd(), log_path, box.join_file)
            except (OSError, RuntimeError, ValueError) as exc:
                log.write(f"[gpu-grid] warm start failed ({type(exc).__name__}: {exc}); starting cold\n".encode())
                notes.append(f"warm start failed ({type(exc).__name__}: {exc}); it started cold")
        if proc is None:
            proc = subprocess.Popen(
                cold_argv,
                env={**env, **guard_env},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        ReaperContainment.roots.add(proc.pid)
        if bootstrapped:
            _move(proc.pid, box.join_file)
        box.observe([proc.pid])
        deadline = time.monotonic() + timeout_s
        timed_out = over_budget = False
        gave_up = None
        while proc.poll() is None:
            tree = box.tree(proc.pid)
            box.observe(tree)
            rss.sample(tree)
            for sampler in samplers:
                sampler.sample(tree)
            if memory_limit_mib is not None and rss.current_mib > memory_limit_mib:
                over_budget = True
                log.write(
                    f"\n[gpu-grid] process tree RSS {rss.current_mib:.0f} MiB is over "
                    f"memory_limit_mib={memory_limit_mib}; ending the trial\n".encode()
                )
                end_group(proc, grace_s=0)
                break
            if watch is not None and (gave_up := watch.gave_up()):
                log.write(
                    f"\n[gpu-grid] its allocator gave up on an allocation ({gave_up}): out of memory; ending "
                    f"it now (the allocator waits for memory before each failure it reports, and the error can "
                    f"take minutes to reach the program)\n".encode()
                )
                end_group(proc, grace_s)
                break
            if time.monotonic() > deadline:
                timed_out = True
                log.write(f"\n[gpu-grid] timeout_s={timeout_s} reached; ending the process group\n".encode())
                end_group(proc, grace_s)
                break
            try:
                proc.wait(timeout=interval_s)
            except subprocess.TimeoutExpired:
                pass
        code = proc.wait()
        ReaperContainment.roots.discard(proc.pid)
        ended = time.time()
        strays = box.end()
        if _group_alive(proc.pid):
            end_group(proc, grace_s=1.0)
    return ChildOutcome(
        pid=proc.pid,
        exit_code=code if code >= 0 else None,
        signal=signal.Signals(-code).name if code < 0 else None,
        timed_out=timed_out,
        over_budget=over_budget,
        started_at=started,
        ended_at=ended,
        # a warm child's own peak (its parent reaped it) where the samples missed it: a trial shorter
        # than a sample interval
        peak_rss_mib=max(rss.peak_mib, getattr(proc, "peak_rss_mib", None) or 0.0),
        stray_killed=strays,
        containment=box.method,
        start="warm" if isinstance(proc, WarmChild) else "cold",
        warm_modules=tuple(warm.modules) if warm is not None and isinstance(proc, WarmChild) else (),
        notes=notes,
        allocator_gave_up=gave_up,
    )
