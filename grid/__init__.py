"""gpu-grid: backend x memory-fraction x batch-size x GPU-count grids on pinned per-GPU Ray workers.

From Python: `grid.run(spec, results=..., overrides=...)`, `grid.load(results)` and
`grid.load_pandas(results)` (grid/api.py); from a shell: `grid run|plan|status|report|compare|query|compact`.
"""

from grid.api import load, load_pandas, run
from grid.version import __version__

__all__ = ["__version__", "load", "load_pandas", "run"]
