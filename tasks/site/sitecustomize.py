"""gpu-grid's trial bootstrap, run by every Python process of a trial.

grid puts this folder first on a trial's PYTHONPATH and names the trial's JSON in GRID_TRIAL, so
the trial's own script, the ranks `torchrun` or `torch.multiprocessing` start and any other
Python child start here: the backend and the memory cap are applied before a framework touches
the GPU, and Keras `fit`/`evaluate`/`predict` are measured (tasks/site/gridtrial). Outside a
trial this does nothing. A `sitecustomize` that this one shadows (a virtualenv's, a distro's) is
run after it. Python started with -S, -I or -E skips both.
"""

import os
import sys
import time

_T0 = time.perf_counter()  # gpu-grid's own share of the process's start is measured from here (boot_s)


def _run_shadowed() -> None:
    """Run the next `sitecustomize` on sys.path, which this module hides by coming first."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _protocol():
    """The worker <-> trial protocol (gridtrial/protocol.py). Where it cannot load, a process of a
    trial ends (Exit.BOOTSTRAP_FAILED): run on without the bootstrap, an uncapped run would look
    capped (site.py would only print the error and go on)."""
    try:
        from gridtrial import protocol
    except Exception as exc:
        print(f"[gpu-grid] trial bootstrap failed in pid {os.getpid()}: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    return protocol


def _start() -> None:
    """A process of a trial: tie itself to the worker, become a warm rank, start the bootstrap."""
    env = _protocol().Env
    if os.environ.get(env.PARENT_PID):
        from gridtrial import guard

        guard.adopt()
    if os.environ.get(env.RANK_PARENT) and os.environ.get(env.TRIAL):
        from gridtrial import ranks

        ranks.relay()  # a torchrun rank forked from the warm launcher ends here; else it starts cold
    if os.environ.get(env.TRIAL):
        from gridtrial import boot

        boot.start_or_exit(since=_T0)


if any(name.startswith("GRID_") for name in os.environ):  # Env.PREFIX: outside gpu-grid, nothing is loaded
    _start()
_run_shadowed()
