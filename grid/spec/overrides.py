"""`--set KEY=VALUE` overrides applied to a raw spec mapping before it is validated."""

from __future__ import annotations

from typing import Any

import yaml

from grid.errors import SpecError
from grid.spec.model import TOP_KEYS
from grid.spec.workloads import CORE, builtin_workloads


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with a YAML value: `batch_size=[32,64]`, `repeats=3`, `memory_fraction=null`."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError([f"--set {text!r}: expected KEY=VALUE, e.g. --set batch_size=[32,64]"], "override")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        raise SpecError([f"--set {text!r}: the value is not valid YAML ({problem})"], "override") from None


def _param_names(data: dict[str, Any]) -> set[str]:
    """The params a spec's `--set` may name: a built-in's declared ones; for the user's own target the
    params and axes it already has, and the core ones."""
    name = data.get("workload")
    builtin = builtin_workloads().get(name) if isinstance(name, str) else None
    if builtin is not None:
        return set(builtin.params)
    if data.get("command") is not None or data.get("function") is not None:
        return {*data["params"], *data["axes"], *CORE}
    return set()


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `--set` overrides to a raw spec mapping. A list sets an axis; one value sets a param."""
    data = dict(data)
    data["params"] = dict(data.get("params") or {})
    data["axes"] = dict(data.get("axes") or {})
    names = _param_names(data)
    for text in overrides:
        key, value = parse_override(text)
        section, _, sub = key.partition(".")
        if section in ("params", "axes") and sub:
            data[section][sub] = value
            other = "axes" if section == "params" else "params"
            data[other].pop(sub, None)
        elif section in ("interpreters", "env", "metrics") and sub:
            data[section] = {**(data.get(section) or {}), sub: value}
        elif key in TOP_KEYS and key not in ("params", "axes"):
            data[key] = value
        elif key in names:
            if isinstance(value, list) or key in data["axes"]:
                data["axes"][key] = value
                data["params"].pop(key, None)
            else:
                data["params"][key] = value
        else:
            valid = sorted({*TOP_KEYS, *names} - {"params", "axes"})
            raise SpecError([f"--set {text!r}: unknown key {key!r}; valid keys are {valid}"], "override")
    return data
