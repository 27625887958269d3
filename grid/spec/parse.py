"""The grid spec: YAML in, a validated `GridSpec` out, or a `SpecError` listing every problem.

Nothing runs and nothing is written until a spec validates. Each problem names the field, the
value received and what is expected: `axes.memory_fraction[1]: received 1.5, expected 0 < f <= 1 or null`.

What a trial runs is one of: `workload:` (a built-in, tasks/workloads.yaml), `command:` (the
user's own script or program) or `function:` (the user's own Python function).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from grid.errors import SpecError
from grid.results.schema import BASE_NAMES
from grid.shared import is_sweep_name
from grid.spec.model import SETTINGS, TARGET_KEYS, TOP_KEYS, GridSpec
from grid.spec.overrides import apply_overrides
from grid.spec.patterns import parse_metrics
from grid.spec.program import check_program
from grid.spec.search import parse_search
from grid.spec.target import (
    PER_TRIAL,
    Script,
    check_python_script,
    command_files,
    find_function,
    placeholders,
    script_of,
    split_command,
)
from grid.spec.workloads import CORE, Target, Workload, builtin_workloads, show, user_workload


def _received(path: str, value: Any, expected: str) -> str:
    return f"{path}: received {show(value)}, expected {expected}"


def _check_type(
    problems: list[str],
    path: str,
    value: Any,
    kind: type | tuple[type, ...],
    expected: str,
    check: Callable[[Any], bool] = lambda v: True,
) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in kinds)
    if not ok or not check(value):
        problems.append(_received(path, value, expected))
    return value


def parse_spec(data: Any, source: str = "spec", base_dir: str | Path | None = None) -> GridSpec:
    """Validate a spec mapping (as loaded from YAML); raise SpecError with every problem found.

    `base_dir` is where the spec lives (relative `workdir` and `interpreters` paths start there);
    by default the current directory."""
    if data is None:
        raise SpecError(
            [
                "the spec is empty: expected a mapping with a name and one of workload, command or "
                "function (see the README's 'The grid spec')"
            ],
            source,
        )
    if not isinstance(data, dict):
        raise SpecError([f"the spec must be a mapping of keys to values, received {type(data).__name__}"], source)
    base = Path(base_dir or os.getcwd()).resolve()
    problems: list[str] = []
    unknown = sorted(set(data) - set(TOP_KEYS), key=str)
    if unknown:
        problems.append(f"unknown key(s) {unknown}; valid keys are {sorted(TOP_KEYS)}")
    name = data.get("name")
    if not is_sweep_name(name):
        problems.append(_received("name", name, "a name of letters, digits, '.', '_' or '-' (used as a folder)"))
    settings = {}
    for key, (kind, expected, check) in SETTINGS.items():
        if key in data:
            settings[key] = _check_type(problems, key, data[key], kind, expected, check)
    workdir = _workdir(problems, data.get("workdir"), base)
    raw_params, raw_axes = _mapping(problems, "params", data), _mapping(problems, "axes", data)
    workload = _workload(problems, data, raw_params, raw_axes, workdir)
    if workload is None:
        raise SpecError(problems, source)
    params = _parse_params(problems, workload, raw_params)
    axes = _parse_axes(problems, workload, raw_axes)
    for both in sorted(set(params) & set(axes)):
        problems.append(f"{both}: set both in params and in axes; keep one")
    search = parse_search(data.get("search"), {*params, *axes}, workload.param("epochs") is not None, problems)
    if workload.target.command:  # the searched axis is a placeholder like any other: each trial's value
        _check_placeholders(problems, workload.target.command, [*params, *axes, *([search.axis] if search else [])])
    exclude = _parse_exclude(problems, workload, data.get("exclude", []) or [])
    interpreters = _parse_str_map(
        problems, "interpreters", data.get("interpreters", {}) or {}, allowed=workload.backends
    )
    env = _parse_str_map(problems, "env", data.get("env", {}) or {})
    metrics = parse_metrics(data.get("metrics"), problems)
    if search is not None and workload.param(search.axis) is None:
        problems.append(f"search: the trials have no {search.axis} parameter to search")
    if search is not None and settings.get("repeats", 1) != 1:
        problems.append(
            f"repeats: received {settings['repeats']} with search:, expected 1; a search repeats its found "
            f"point with search.confirm (and the uncapped reference as many times)"
        )
    if problems:
        raise SpecError(problems, source)
    if "timeout_s" in settings:
        settings["timeout_s"] = float(settings["timeout_s"])
    interpreters = {k: v if os.path.isabs(v) else str(base / v) for k, v in interpreters.items()}
    return GridSpec(
        name=str(name),
        workload_def=workload,
        axes=axes,
        params=params,
        exclude=exclude,
        interpreters=interpreters,
        env=env,
        workdir=str(workdir),
        metrics=metrics,
        script=_script(workload, workdir),
        search=search,
        **settings,
    )


def _mapping(problems: list[str], key: str, data: dict) -> dict:
    raw = data.get(key) or {}
    if not isinstance(raw, dict):
        what = "one value" if key == "params" else "a list of values"
        problems.append(_received(key, raw, f"a mapping of parameter to {what}"))
        return {}
    return raw


def _workdir(problems: list[str], raw: Any, base: Path) -> Path:
    if raw is None:
        return base
    if not isinstance(raw, str) or not raw:
        problems.append(_received("workdir", raw, "a directory (relative to the spec file's folder)"))
        return base
    path = (base / raw).resolve()
    if not path.is_dir():
        problems.append(_received("workdir", raw, f"an existing directory ({path} is not one)"))
    return path


def _workload(problems: list[str], data: dict, raw_params: dict, raw_axes: dict, workdir: Path) -> Workload | None:
    given = [k for k in TARGET_KEYS if data.get(k) is not None]
    if len(given) != 1:
        problems.append(
            f"give exactly one of workload (a built-in), command (your script) or function (your "
            f"Python function); received {', '.join(given) or 'none of them'}"
        )
        return None
    if given[0] == "workload":
        catalog = builtin_workloads()
        workload = catalog.get(data["workload"]) if isinstance(data["workload"], str) else None
        if workload is None:
            problems.append(_received("workload", data["workload"], f"one of {sorted(catalog)}"))
        return workload
    if given[0] == "command":
        target = Target(command=split_command(data["command"], problems))
        check_python_script(target.command or (), workdir, problems)
        check_program(target.command or (), workdir, problems)
    else:
        before = len(problems)
        find_function(data["function"], workdir, problems)
        if len(problems) > before:
            return None
        target = Target(function=data["function"])
    values: dict[str, list[Any]] = {}
    where: dict[str, str] = {}
    for key, value in raw_params.items():
        values[key], where[key] = [value], f"params.{key}"
    for key, value in raw_axes.items():
        values.setdefault(key, []).extend(value if isinstance(value, list) else [value])
        where.setdefault(key, f"axes.{key}")
    for key in values:
        if key in BASE_NAMES and key not in CORE:
            problems.append(f"{where[key]}: {key!r} is the name of a results column of gpu-grid; rename the param")
    return user_workload(target, values, problems, where)


def _check_placeholders(problems: list[str], command: tuple[str, ...], known: list[str]) -> None:
    for name in placeholders(command, problems):
        if name not in known and name not in PER_TRIAL:
            problems.append(
                f"command: placeholder {{{name}}} names no axis or param; known names: "
                f"{', '.join(sorted(known) + list(PER_TRIAL))}"
            )


def _script(workload: Workload, workdir: Path) -> Script:
    target = workload.target
    if workload.builtin:
        return Script((), None)
    if target.command:
        return script_of(command_files(target.command, workdir), workdir)
    path = find_function(target.function, workdir, [])
    return script_of([path] if path else [], workdir)


def _param_problem(workload: Workload, path: str, key: str, value: Any) -> str | None:
    expected = workload.known_param(key).problem(value)
    return None if expected is None else _received(path, value, expected)


def _unknown_param(problems: list[str], workload: Workload, path: str, key: Any) -> bool:
    if workload.param(key) is not None:
        return False
    problems.append(
        f"{path}: unknown parameter {show(key)} for workload {workload.name!r}; "
        f"valid parameters are {sorted(workload.params)}"
    )
    return True


def _parse_params(problems: list[str], workload: Workload, raw: dict) -> dict[str, Any]:
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
        params[key] = workload.known_param(key).coerce(value)
    return params


def _parse_axes(problems: list[str], workload: Workload, raw: dict) -> dict[str, list[Any]]:
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
        coerced = [workload.known_param(key).coerce(v) for v in values]
        duplicates = _repeated(coerced)
        if duplicates:
            problems.append(
                f"axes.{key}: repeated value(s) {', '.join(duplicates)}; use `repeats` to run a trial again"
            )
        axes[key] = coerced
    return axes


def _repeated(values: list[Any]) -> list[str]:
    """The values given more than once (as `==` tells: 1 and 1.0 are one value), shown; linear."""
    seen: dict[Any, int] = {}
    others: list[Any] = []  # unhashable values (lists, mappings): few, compared one by one
    repeated = set()
    for value in values:
        try:
            seen[value] = seen.get(value, 0) + 1
            if seen[value] > 1:
                repeated.add(show(value))
        except TypeError:
            if value in others:
                repeated.add(show(value))
            others.append(value)
    return sorted(repeated)


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
            parsed[key] = [workload.known_param(key).coerce(v) for v in values]
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


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML's safe loader (libyaml's where PyYAML has it: a 100,000-value axis parses in a second,
    not ten), but a key written twice in one mapping is an error: YAML would keep the last one
    silently, and a grid would run other trials than the file seems to say."""


def _unique_keys(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` then overriding a key is how YAML is meant to be used
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1}): YAML would keep only the last; write it once",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_keys)


def load_spec(path: str | Path, overrides: list[str] | None = None) -> GridSpec:
    """Read, override and validate a spec file; its folder is the default workdir."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([f"cannot read {path}: {exc.strerror}"], str(path)) from None
    try:
        data = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        raise SpecError([f"not valid YAML: {exc}"], str(path)) from None
    if isinstance(data, dict) and overrides:
        data = apply_overrides(data, overrides)
    return parse_spec(data, str(path), base_dir=path.resolve().parent)
