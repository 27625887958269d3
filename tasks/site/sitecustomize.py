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


if os.environ.get("GRID_PARENT_PID"):
    from gridtrial import guard

    guard.adopt()
if os.environ.get("GRID_RANK_PARENT") and os.environ.get("GRID_TRIAL"):
    from gridtrial import ranks

    ranks.relay()  # a torchrun rank forked from the warm launcher ends here; else it starts cold
if os.environ.get("GRID_TRIAL"):
    from gridtrial import boot

    boot.start_or_exit()
_run_shadowed()
