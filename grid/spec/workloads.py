"""What a trial runs, as data: its params (types, defaults, checks) and its target.

A target is a Python function called in the trial process (`function: pkg.module:train`) or a
command (`command: python train.py --batch-size {batch_size}`); both run under the trial
bootstrap. The built-in workloads are entries of `tasks/workloads.yaml`, read here as data:
the scheduler side never imports `tasks/`. A user's command or function gets its params from
the spec's `params` and `axes`, typed by their values.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grid.errors import SpecError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TASKS_DIR = PROJECT_ROOT / "tasks"
CATALOG = TASKS_DIR / "workloads.yaml"
TRIAL_SITE = TASKS_DIR / "site"  # first on every trial's PYTHONPATH: sitecustomize + gridtrial

_PLAIN = re.compile(r"^[\w@%+=:,./{}-]+$")  # command words shown without quotes
BACKENDS = ("none", "tensorflow", "jax", "torch", "mxnet")
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool}
_KIND_TEXT = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def show(value: Any) -> str:
    """A value as the user wrote it in YAML: null, true, 1.5, "text"."""
    return json.dumps(value, default=str)


@dataclass(frozen=True)
class Param:
    """One trial parameter: its type, default and the check a value must pass."""

    name: str
    kind: type
    default: Any = None
    nullable: bool = False
    choices: tuple = ()
    minimum: float | None = None  # value >= minimum
    above: float | None = None  # value > above
    maximum: float | None = None  # value <= maximum
    expected_text: str | None = None

    @property
    def expected(self) -> str:
        if self.expected_text:
            return self.expected_text
        if self.choices:
            return f"one of {list(self.choices)}"
        bounds = [
            f"> {self.above:g}" if self.above is not None else None,
            f">= {self.minimum:g}" if self.minimum is not None else None,
            f"<= {self.maximum:g}" if self.maximum is not None else None,
        ]
        text = " ".join([_KIND_TEXT[self.kind], " and ".join(b for b in bounds if b)]).strip()
        return text + (" or null" if self.nullable else "")

    def problem(self, value: Any) -> str | None:
        """What a value should have been, or None if it is acceptable."""
        if value is None:
            return None if self.nullable else self.expected
        if self.choices:
            return None if value in self.choices and type(value) is type(self.choices[0]) else self.expected
        if isinstance(value, bool) and self.kind is not bool:
            return self.expected
        if self.kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, self.kind):
            return self.expected
        if isinstance(value, (int, float)) and not self._within_bounds(value):
            return self.expected
        return None

    def _within_bounds(self, value: float) -> bool:
        return not (
            (self.minimum is not None and value < self.minimum)
            or (self.above is not None and value <= self.above)
            or (self.maximum is not None and value > self.maximum)
        )

    def coerce(self, value: Any) -> Any:
        """An int where a float is expected, as a float (0 -> 0.0); anything else as it is."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value


# Params whose meaning gpu-grid knows: the scheduler, the memory caps and the reports use them.
CORE: dict[str, Param] = {
    p.name: p
    for p in (
        Param("backend", str, None, choices=BACKENDS),
        Param("memory_fraction", float, None, nullable=True, above=0, maximum=1, expected_text="0 < f <= 1 or null"),
        Param("batch_size", int, None, minimum=1),
        Param("gpus", int, 1, minimum=1),
        Param("epochs", int, None, minimum=1),
        Param("preallocate", bool, True),
        Param("memory_growth", bool, False),
        Param("compile_cache", bool, True),
        Param("warm_start", bool, True),
    )
}
# Core params every workload takes, built-ins included, without being in the config unless set
# (a built-in's declared params are; these would change every existing trial's id).
EVERYWHERE = frozenset({"compile_cache", "warm_start"})
# Names a trial may not use for its own params: the trial's identity and the bootstrap's variables.
RESERVED = frozenset({"trial", "trial_id", "attempt", "repeat", "sweep", "trial_dir"})


@dataclass(frozen=True)
class Target:
    """What runs in the trial process: a function ('pkg.module:name') or a command (argv template)."""

    function: str | None = None
    command: tuple[str, ...] | None = None

    def text(self) -> str:
        if self.function:
            return f"function {self.function}"
        return "command " + " ".join(t if _PLAIN.match(t) else shlex.quote(t) for t in self.command or ())


@dataclass(frozen=True)
class Workload:
    name: str  # a built-in's name, or "command" / "function" for the user's own target
    summary: str
    params: dict[str, Param]
    target: Target
    backend_targets: dict[str, Target] = field(default_factory=dict)
    builtin: bool = False

    def target_for(self, backend: str | None) -> Target:
        return self.backend_targets.get(backend or "", self.target)

    def defaults(self) -> dict[str, Any]:
        """Config values every trial has unless the spec sets them (a built-in's declared defaults)."""
        return {name: p.default for name, p in self.params.items()} if self.builtin else {}

    def param(self, name: str) -> Param | None:
        return self.params.get(name) or (CORE.get(name) if not self.builtin or name in EVERYWHERE else None)

    def known_param(self, name: str) -> Param:
        """A param the spec has already been checked to name."""
        param = self.param(name)
        if param is None:
            raise KeyError(f"{self.name} has no parameter {name!r}")
        return param

    @property
    def backends(self) -> tuple[str, ...]:
        backend = self.params.get("backend")
        return backend.choices if backend is not None and backend.choices else BACKENDS


def _described_param(name: str, desc: dict[str, Any], where: str) -> Param:
    core = CORE.get(name)
    kind = _TYPE_NAMES.get(desc.get("type", "")) or (core.kind if core else None)
    if kind is None:
        raise SpecError([f"{where}.params.{name}: needs type: int, float, str or bool"], str(CATALOG))
    base = core or Param(name, kind)
    return Param(
        name,
        kind,
        desc.get("default", base.default),
        desc.get("nullable", base.nullable),
        tuple(desc.get("choices", base.choices)),
        desc.get("min", base.minimum),
        desc.get("above", base.above),
        desc.get("max", base.maximum),
        desc.get("expected", base.expected_text),
    )


def _described_target(desc: dict[str, Any], where: str) -> Target:
    if "function" in desc:
        return Target(function=str(desc["function"]))
    if "command" in desc:
        return Target(command=tuple(str(t) for t in desc["command"]))
    raise SpecError([f"{where}: needs function or command"], str(CATALOG))


@functools.lru_cache(maxsize=1)
def builtin_workloads() -> dict[str, Workload]:
    """The catalog of built-in workloads (tasks/workloads.yaml)."""
    try:
        raw = yaml.safe_load(CATALOG.read_text())
    except OSError as exc:
        raise SpecError([f"cannot read the built-in workloads at {CATALOG}: {exc.strerror}"], "install") from None
    out = {}
    for name, desc in raw.items():
        params = {p: _described_param(p, d or {}, name) for p, d in (desc.get("params") or {}).items()}
        backends = {b: _described_target(d, f"{name}.backends.{b}") for b, d in (desc.get("backends") or {}).items()}
        out[name] = Workload(
            name, desc.get("summary", ""), params, _described_target(desc, name), backends, builtin=True
        )
    return out


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def inferred_kind(values: list[Any]) -> type | str:
    """The column type of a user param from its values; a text saying why when they do not agree."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return str
    if kinds <= {int, float}:
        return float if float in kinds else int
    if len(kinds) == 1 and kinds <= {str, bool}:
        return kinds.pop()
    allowed = {int, float, str, bool}
    if not kinds <= allowed:
        odd = next(v for v in values if v is not None and type(v) not in allowed)
        return f"a string, number, true/false or null (received {show(odd)}, a {type(odd).__name__})"
    return "one type for every value (received " + ", ".join(sorted(k.__name__ for k in kinds)) + ")"


def user_workload(target: Target, values: dict[str, list[Any]], problems: list[str], where: dict[str, str]) -> Workload:
    """A user's command or function: one param per key of `params` and `axes`, typed by its values;
    a core param keeps its own type and check. `where` names each key's place in the spec."""
    params: dict[str, Param] = {}
    for name, vals in values.items():
        path = where[name]
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            problems.append(
                f"{path}: received {show(name)}, expected a name of letters, digits and '_' "
                f"(it becomes the variable GRID_<NAME> and a results column)"
            )
            continue
        if name in RESERVED:
            problems.append(f"{path}: {name!r} is reserved: gpu-grid sets it for each trial; rename the param")
            continue
        if name in CORE:
            params[name] = CORE[name]
            continue
        kind = inferred_kind(vals)
        if isinstance(kind, str):
            problems.append(f"{path}: expected {kind}")
            continue
        params[name] = Param(name, kind, nullable=True)
    name = "function" if target.function else "command"
    return Workload(name, target.text(), params, target)
