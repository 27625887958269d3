"""gpu-grid: backend x memory-fraction x batch-size x GPU-count grids on pinned per-GPU Ray workers."""

__version__ = "0.1.0"
