"""The spec's `metrics:`: patterns over a trial's output lines that give values of their own,
and each metric's declared direction.

Metrics are open: any scalar a trial reports becomes a column named after it (from Keras'
History and `evaluate`, these patterns, `gridtrial.report(...)` or a function's return value).
A metric's direction (is higher better?) comes from here (`{pattern: ..., goal: max}`), else
from its name (grid/results/schema.py); `grid compare` needs one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from grid.results.schema import GOALS

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/-]{0,99}$")
TYPES = ("number", "text")  # a pattern's value: a number (the default), or text kept as it matched


@dataclass(frozen=True)
class MetricPattern:
    name: str
    pattern: re.Pattern | None  # None: a value the trial reports itself; only its goal is declared
    goal: str | None = None
    type: str = "number"  # its column's type in every row, matched or not (the results' one type per column)

    def value(self, match: re.Match) -> float | str:
        """The `value` group, else the first group, else the whole match; a number when it reads as one
        (`type: text`: the text as it matched)."""
        if "value" in match.re.groupindex:
            text = match.group("value")
        else:
            text = match.group(1) if match.re.groups else match.group(0)
        if self.type == "text":
            return text
        try:
            return float(text)
        except (TypeError, ValueError):
            return text


def parse_metrics(raw: Any, problems: list[str]) -> dict[str, MetricPattern]:
    """`metrics:` -> name: 'regex', name: {pattern: 'regex', goal: max|min, type: number|text}, or
    name: {goal: max|min} (the direction of a value the trial reports itself)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(
            f"metrics: received {json.dumps(raw, default=str)}, expected a mapping of metric name "
            f"to a regular expression or {{pattern: ..., goal: max|min}}"
        )
        return {}
    out = {}
    for name, spec in raw.items():
        path = f"metrics.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(
                f"{path}: received {json.dumps(name, default=str)}, expected a name of letters, digits, "
                f"'_', '.', ':', '/' or '-' starting with a letter (it becomes a column)"
            )
            continue
        spec = {"pattern": spec} if isinstance(spec, str) else spec
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("pattern", ""), str)
            or not (spec.get("pattern") or spec.get("goal"))
        ):
            problems.append(
                f"{path}: received {json.dumps(spec, default=str)}, expected a regular expression, "
                f"{{pattern: ..., goal: max|min}} or {{goal: max|min}}"
            )
            continue
        unknown = sorted(set(spec) - {"pattern", "goal", "type"})
        if unknown:
            problems.append(f"{path}: unknown key(s) {unknown}; valid keys are ['goal', 'pattern', 'type']")
        goal = spec.get("goal")
        if goal is not None and goal not in GOALS:
            problems.append(f"{path}.goal: received {json.dumps(goal, default=str)}, expected max or min")
        kind = spec.get("type", "number")
        if kind not in TYPES:
            problems.append(f"{path}.type: received {json.dumps(kind, default=str)}, expected number or text")
        if "pattern" not in spec:
            out[name] = MetricPattern(name, None, goal)
            continue
        try:
            pattern = re.compile(spec["pattern"])
        except re.error as exc:
            problems.append(f"{path}: the pattern {spec['pattern']!r} does not compile: {exc}")
            continue
        if pattern.groups > 1 and "value" not in pattern.groupindex:
            problems.append(
                f"{path}: the pattern {spec['pattern']!r} has {pattern.groups} groups; keep one group "
                f"around the value, or name it (?P<value>...)"
            )
            continue
        out[name] = MetricPattern(name, pattern, goal, kind)
    return out
