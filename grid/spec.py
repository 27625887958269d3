"""The grid spec: YAML in, a validated `GridSpec` out, or a `SpecError` listing every problem.

Nothing runs and nothing is written until a spec validates. Each problem names the field, the
value received and what is expected: `axes.memory_fraction[1]: received 1.5, expected 0 < f <= 1 or null`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grid.errors import SpecError
from tasks import WORKLOADS, Workload

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class GridSpec:
    """A validated grid. Defaults are the documented ones (README, 'Grid spec')."""

    name: str
    workload: str
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

    @property
    def workload_def(self) -> Workload:
        return WORKLOADS[self.workload]


def show(value: Any) -> str:
    """A value as the user wrote it in YAML: null, true, 1.5, "text"."""
    return json.dumps(value, default=str)


def _received(path: str, value: Any, expected: str) -> str:
    return f"{path}: received {show(value)}, expected {expected}"


def _check_type(problems: list[str], path: str, value: Any, kind: type | tuple, expected: str,
                check=lambda v: True) -> Any:
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
    if not ok or not check(value):
        problems.append(_received(path, value, expected))
    return value


def _as_tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


# key -> (types, expected, check); the spec's scalar settings
_SETTINGS: dict[str, tuple[Any, str, Any]] = {
    "repeats": (int, "an integer >= 1", lambda n: n >= 1),
    "timeout_s": ((int, float), "a number of seconds > 0", lambda s: s > 0),
    "exclusive": (bool, "true or false", lambda b: True),
    "trials_per_gpu": (int, "an integer >= 1", lambda n: n >= 1),
    "memory_limit_mib": ((int, type(None)), "an integer >= 1 or null", lambda n: n is None or n >= 1),
    "retries": (int, "an integer >= 0", lambda n: n >= 0),
    "sample_interval_ms": (int, "an integer from 1 to 1000", lambda n: 1 <= n <= 1000),
    "description": (str, "a string", lambda s: True),
}
TOP_KEYS = ("name", "workload", "params", "axes", "exclude", "interpreters", "env", *_SETTINGS)


def parse_spec(data: Any, source: str = "spec") -> GridSpec:
    """Validate a spec mapping (as loaded from YAML); raise SpecError with every problem found."""
    if not isinstance(data, dict):
        raise SpecError([f"the spec must be a mapping of keys to values, received {type(data).__name__}"], source)
    problems: list[str] = []
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {unknown}; valid keys are {sorted(TOP_KEYS)}")

    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(_received("name", name, "a name of letters, digits, '.', '_' or '-' (used as a folder)"))
    workload_name = data.get("workload")
    workload = WORKLOADS.get(workload_name) if isinstance(workload_name, str) else None
    if workload is None:
        problems.append(_received("workload", workload_name, f"one of {sorted(WORKLOADS)}"))
        raise SpecError(problems, source)

    settings = {}
    for key, (kind, expected, check) in _SETTINGS.items():
        if key in data:
            settings[key] = _check_type(problems, key, data[key], kind, expected, check)
    params = _parse_params(problems, workload, data.get("params", {}) or {})
    axes = _parse_axes(problems, workload, data.get("axes", {}) or {})
    for both in sorted(set(params) & set(axes)):
        problems.append(f"{both}: set both in params and in axes; keep one")
    exclude = _parse_exclude(problems, workload, data.get("exclude", []) or [])
    interpreters = _parse_str_map(problems, "interpreters", data.get("interpreters", {}) or {},
                                  allowed=tuple(workload.params["backend"].choices))
    env = _parse_str_map(problems, "env", data.get("env", {}) or {})
    if problems:
        raise SpecError(problems, source)
    if "timeout_s" in settings:
        settings["timeout_s"] = float(settings["timeout_s"])
    return GridSpec(name=name, workload=workload.name, axes=axes, params=params, exclude=exclude,
                    interpreters=interpreters, env=env, **settings)


def _param_problem(workload: Workload, path: str, key: str, value: Any) -> str | None:
    param = workload.params[key]
    expected = param.problem(value)
    return None if expected is None else _received(path, value, expected)


def _unknown_param(problems: list[str], workload: Workload, path: str, key: Any) -> bool:
    if key in workload.params:
        return False
    problems.append(f"{path}: unknown parameter {show(key)} for workload {workload.name!r}; "
                    f"valid parameters are {sorted(workload.params)}")
    return True


def _parse_params(problems: list[str], workload: Workload, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        problems.append(_received("params", raw, "a mapping of parameter to one value"))
        return {}
    params = {}
    for key, value in raw.items():
        if _unknown_param(problems, workload, f"params.{key}", key):
            continue
        if isinstance(value, list):
            problems.append(_received(f"params.{key}", value, "one value (put lists of values under axes)"))
            continue
        problem = _param_problem(workload, f"params.{key}", key, value)
        if problem:
            problems.append(problem)
        params[key] = workload.params[key].coerce(value)
    return params


def _parse_axes(problems: list[str], workload: Workload, raw: Any) -> dict[str, list[Any]]:
    if not isinstance(raw, dict):
        problems.append(_received("axes", raw, "a mapping of parameter to a list of values"))
        return {}
    axes = {}
    for key, values in raw.items():
        if _unknown_param(problems, workload, f"axes.{key}", key):
            continue
        values = values if isinstance(values, list) else [values]
        if not values:
            problems.append(_received(f"axes.{key}", values, "a non-empty list of values"))
            continue
        for i, value in enumerate(values):
            problem = _param_problem(workload, f"axes.{key}[{i}]", key, value)
            if problem:
                problems.append(problem)
        coerced = [workload.params[key].coerce(v) for v in values]
        duplicates = sorted({show(v) for v in coerced if coerced.count(v) > 1})
        if duplicates:
            problems.append(f"axes.{key}: repeated value(s) {', '.join(duplicates)}; use `repeats` to run a trial again")
        axes[key] = coerced
    return axes


def _parse_exclude(problems: list[str], workload: Workload, raw: Any) -> list[dict[str, list[Any]]]:
    if not isinstance(raw, list):
        problems.append(_received("exclude", raw, "a list of rules like {backend: torch, batch_size: 256}"))
        return []
    rules = []
    for i, rule in enumerate(raw):
        path = f"exclude[{i}]"
        if not isinstance(rule, dict) or not rule:
            problems.append(_received(path, rule, "a non-empty mapping of parameter to value(s)"))
            continue
        parsed = {}
        for key, values in rule.items():
            if _unknown_param(problems, workload, f"{path}.{key}", key):
                continue
            values = values if isinstance(values, list) else [values]
            for value in values:
                problem = _param_problem(workload, f"{path}.{key}", key, value)
                if problem:
                    problems.append(problem)
            parsed[key] = [workload.params[key].coerce(v) for v in values]
        rules.append(parsed)
    return rules


def _parse_str_map(problems: list[str], path: str, raw: Any, allowed: tuple = ()) -> dict[str, str]:
    if not isinstance(raw, dict):
        problems.append(_received(path, raw, "a mapping of names to strings"))
        return {}
    out = {}
    for key, value in raw.items():
        if allowed and key not in allowed:
            problems.append(_received(f"{path}.{key}", key, f"a backend of this workload, one of {list(allowed)}"))
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problems.append(_received(f"{path}.{key}", value, "a string"))
        else:
            out[str(key)] = str(value)
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with a YAML value: `batch_size=[32,64]`, `repeats=3`, `memory_fraction=null`."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError([f"--set {text!r}: expected KEY=VALUE, e.g. --set batch_size=[32,64]"], "override")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise SpecError([f"--set {text!r}: the value is not valid YAML ({exc.problem})"], "override") from None


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `--set` overrides to a raw spec mapping. A list sets an axis; one value sets a param."""
    data = dict(data)
    data["params"] = dict(data.get("params") or {})
    data["axes"] = dict(data.get("axes") or {})
    workload = WORKLOADS.get(data.get("workload"))
    for text in overrides:
        key, value = parse_override(text)
        section, _, sub = key.partition(".")
        if section in ("params", "axes") and sub:
            data[section][sub] = value
            other = "axes" if section == "params" else "params"
            data[other].pop(sub, None)
        elif section in ("interpreters", "env") and sub:
            data[section] = {**(data.get(section) or {}), sub: value}
        elif key in TOP_KEYS and key not in ("params", "axes"):
            data[key] = value
        elif workload is not None and key in workload.params:
            if isinstance(value, list) or key in data["axes"]:
                data["axes"][key] = value
                data["params"].pop(key, None)
            else:
                data["params"][key] = value
        else:
            valid = sorted({*TOP_KEYS, *(workload.params if workload else ())} - {"params", "axes"})
            raise SpecError([f"--set {text!r}: unknown key {key!r}; valid keys are {valid}"], "override")
    return data


def load_spec(path: str | Path, overrides: list[str] | None = None) -> GridSpec:
    """Read, override and validate a spec file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([f"cannot read {path}: {exc.strerror}"], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([f"not valid YAML: {exc}"], str(path)) from None
    if isinstance(data, dict) and overrides:
        data = apply_overrides(data, overrides)
    return parse_spec(data, str(path))
