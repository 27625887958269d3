"""gpu-grid: backend x memory-fraction x batch-size x GPU-count grids on pinned per-GPU Ray workers.

From Python: `grid.run(spec, results=..., overrides=...)` and `grid.load(results)` (grid/api.py).
"""

__version__ = "0.2.0"


def run(*args, **kwargs):
    """Run a sweep and return its latest rows as an Arrow table (see grid.api.run)."""
    from grid.api import run as _run

    return _run(*args, **kwargs)


def load(*args, **kwargs):
    """A results location as an Arrow table (see grid.api.load)."""
    from grid.api import load as _load

    return _load(*args, **kwargs)


def load_pandas(*args, **kwargs):
    """A results location as a pandas DataFrame (see grid.api.load_pandas)."""
    from grid.api import load_pandas as _load_pandas

    return _load_pandas(*args, **kwargs)
