"""The Python API over the same engine as the CLI, for notebooks and scripts:

    import grid
    table = grid.run("examples/keras/grid.yaml", results="results", overrides={"epochs": 1})
    df = grid.load("results", sweep="keras-example").to_pandas()     # or grid.load_pandas(...)

`run` takes a spec file or a spec mapping (a mapping's workdir is the current directory unless it
says otherwise), runs what is not done yet and returns the sweep's latest rows; `load` reads any
results location (a folder or an s3:// URI) as an Arrow table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from grid.errors import UsageError
from grid.options import RunOptions
from grid.results.dedupe import latest_attempts
from grid.results.store import ResultStore
from grid.spec.model import GridSpec
from grid.spec.overrides import apply_overrides
from grid.spec.parse import load_spec, parse_spec


def _overrides(overrides: dict[str, Any] | list[str] | None) -> list[str]:
    """`{"epochs": 1, "batch_size": [32, 64]}` or `["epochs=1"]` as `--set` texts."""
    if overrides is None:
        return []
    if isinstance(overrides, dict):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
    return list(overrides)


def spec_from(
    spec: str | Path | dict[str, Any] | GridSpec, overrides: dict[str, Any] | list[str] | None = None
) -> GridSpec:
    """A validated spec from a path, a mapping or a GridSpec (which takes no overrides)."""
    sets = _overrides(overrides)
    if isinstance(spec, GridSpec):
        if sets:
            raise UsageError("overrides apply to a spec file or mapping, not to a parsed GridSpec")
        return spec
    if isinstance(spec, dict):
        return parse_spec(apply_overrides(spec, sets) if sets else spec, "spec")
    return load_spec(spec, sets)


def run(
    spec: str | Path | dict[str, Any] | GridSpec,
    results: str = "results",
    overrides: dict[str, Any] | list[str] | None = None,
    *,
    progress: bool = False,
    quiet: bool = False,
    **options: Any,
) -> pa.Table:
    """Run a sweep (resuming what is done) and return its trials' latest rows. `options` are
    `grid run`'s, by their names in grid/options.py's RunOptions: runner, address, num_gpus,
    gpu_memory_mib, cpu_slots, shared_results, retry_failed, state_dir, store_retry_s, lease_ttl_s."""
    from rich.console import Console

    from grid.sweep import run_sweep

    parsed = spec_from(spec, overrides)
    opts = RunOptions.of(results=str(results), live=progress, **options)
    run_sweep(parsed, opts, Console(quiet=True) if quiet else Console())
    return load(results, sweep=parsed.name)


def load(results: str = "results", sweep: str | None = None, attempts: bool = False) -> pa.Table:
    """A results location as an Arrow table: each trial's latest attempt (or every attempt)."""
    table = ResultStore(str(results)).read(sweep)
    return table if attempts else latest_attempts(table)


def load_pandas(results: str = "results", sweep: str | None = None, attempts: bool = False) -> Any:
    """`load(...)` as a pandas DataFrame (needs pandas)."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise UsageError("load_pandas needs pandas: pip install pandas (or use load(...), an Arrow table)") from None
    return load(results, sweep, attempts).to_pandas()
