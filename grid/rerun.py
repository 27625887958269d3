"""`grid compare --confirm K`: re-run just the configs a comparison flagged, K times, from the spec
that made the current run, so that a regression is confirmed before the exit code says so.

Each re-run is a sweep of the spec (with the same `--set` overrides) narrowed to the flagged configs:
every axis keeps only their values, and the combinations of those values that were not flagged are
excluded. It goes to `CURRENT/_confirm-<k>`, a results location inside the current run's that its
readers never list as a sweep."""

from __future__ import annotations

import itertools
import json
from typing import Any

from rich.console import Console

from grid.options import RunOptions
from grid.results.history import child_uri
from grid.spec.parse import load_spec
from grid.sweep import run_sweep


def narrowed(spec_path: str, overrides: list[str], configs: list[dict[str, Any]]) -> list[str]:
    """The `--set` overrides that narrow the spec to these configs (axes and excludes)."""
    spec = load_spec(spec_path, overrides)
    axes = {
        name: [v for v in values if any(c.get(name, v) == v for c in configs)] for name, values in spec.axes.items()
    }
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    excluded = [
        {name: [value] for name, value in combo.items()}
        for combo in combos
        if not any(all(c[n] == v for n, v in combo.items() if n in c) for c in configs)
    ]
    sets = [f"axes.{name}={json.dumps(values)}" for name, values in axes.items()]
    return [*overrides, *sets, f"exclude={json.dumps([*spec.exclude, *excluded])}"]


def rerun(
    spec_path: str,
    overrides: list[str],
    configs: list[dict[str, Any]],
    times: int,
    current: str,
    opts: RunOptions,
    console: Console,
) -> list[str]:
    """Run the flagged configs `times` times; the results locations of the re-runs."""
    spec = load_spec(spec_path, narrowed(spec_path, overrides, configs))
    uris = []
    for k in range(1, times + 1):
        uri = child_uri(current, f"_confirm-{k}")
        console.print(f"confirm {k}/{times}: re-running {len(configs)} flagged config(s) into {uri}", highlight=False)
        run_sweep(spec, RunOptions.of(**{**opts.__dict__, "results": uri}), console)
        uris.append(uri)
    return uris
