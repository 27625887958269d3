"""gpu-grid's version (the package's, and the `grid_version` column of every row)."""

__version__ = "0.2.0"
