"""The first thing a trial's top process does: join the trial's cgroup and die with the worker
thread that started it (PR_SET_PDEATHSIG). The worker asks for it with GRID_PARENT_PID (its pid)
and GRID_CGROUP_PROCS (the cgroup's procs file, "-" for none); doing it here, in the bootstrap,
spares every trial a second interpreter start. Standard library only, nothing imported early.
"""

from __future__ import annotations

import os
import sys

from gridtrial.protocol import Env, Exit

_PR_SET_PDEATHSIG = 1
_SIGKILL = 9


def adopt() -> None:
    parent = os.environ.pop(Env.PARENT_PID, None)  # popped: the trial's own children skip this
    join = os.environ.pop(Env.CGROUP_PROCS, "-")
    if parent is None:
        return
    if join != "-":
        try:
            with open(join, "w") as f:
                f.write(str(os.getpid()))
        except OSError as exc:
            print(f"[gpu-grid] could not join the trial cgroup: {exc}", file=sys.stderr, flush=True)
    why = die_with(int(parent))
    if why:  # no prctl (not Linux): the worker's own clean-up still ends the group
        print(f"[gpu-grid] could not tie the trial to its worker: {why}", file=sys.stderr, flush=True)


def die_with(parent: int) -> str | None:
    """Be killed when `parent` dies (PR_SET_PDEATHSIG); end at once if it died before that was set
    (nothing would end us). Returns why it could not be set, if it could not."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, _SIGKILL)
    except Exception as exc:
        return str(exc)
    if os.getppid() != parent:
        os._exit(Exit.ORPHANED)
    return None
