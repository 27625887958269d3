"""A validated grid spec (`GridSpec`) and the keys a spec file may have."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grid.spec.patterns import MetricPattern
from grid.spec.search import SearchSpec
from grid.spec.target import Script
from grid.spec.workloads import Workload

TARGET_KEYS = ("workload", "command", "function")


@dataclass(frozen=True)
class GridSpec:
    """A validated grid. Defaults are the documented ones (README, 'The grid spec')."""

    name: str
    workload_def: Workload
    axes: dict[str, list[Any]]
    params: dict[str, Any] = field(default_factory=dict)
    exclude: list[dict[str, list[Any]]] = field(default_factory=list)
    repeats: int = 1
    timeout_s: float = 3600.0
    exclusive: bool = True
    trials_per_gpu: int = 2
    memory_limit_mib: int | None = None
    retries: int = 2
    sample_interval_ms: int = 20
    interpreters: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    workdir: str = "."  # where the target runs; the spec file's folder unless `workdir:` says otherwise
    metrics: dict[str, MetricPattern] = field(default_factory=dict)
    script: Script = field(default_factory=lambda: Script((), None))
    search: SearchSpec | None = None

    @property
    def workload(self) -> str:
        return self.workload_def.name

    @property
    def identity(self) -> str:
        """What, besides the config and repeat, makes a trial: a built-in's name, or the user's target
        and the hash of the script it runs (editing the script makes new trials)."""
        if self.workload_def.builtin:
            return self.workload
        return f"{self.workload_def.target.text()}\nscript {self.script.sha256}"

    def param_kinds(self) -> dict[str, type]:
        return {name: p.kind for name, p in self.workload_def.params.items()}


# key -> (types, expected, check); the spec's scalar settings
SETTINGS: dict[str, tuple[Any, str, Any]] = {
    "repeats": (int, "an integer >= 1", lambda n: n >= 1),
    "timeout_s": ((int, float), "a number of seconds > 0", lambda s: s > 0),
    "exclusive": (bool, "true or false", lambda b: True),
    "trials_per_gpu": (int, "an integer >= 1", lambda n: n >= 1),
    "memory_limit_mib": ((int, type(None)), "an integer >= 1 or null", lambda n: n is None or n >= 1),
    "retries": (int, "an integer >= 0", lambda n: n >= 0),
    "sample_interval_ms": (int, "an integer from 1 to 1000", lambda n: 1 <= n <= 1000),
    "description": (str, "a string", lambda s: True),
}
TOP_KEYS = (
    "name",
    *TARGET_KEYS,
    "workdir",
    "metrics",
    "search",
    "params",
    "axes",
    "exclude",
    "interpreters",
    "env",
    *SETTINGS,
)
