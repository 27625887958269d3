"""Metrics are open: any scalar a trial reports becomes a column named after it.

Values come from Keras' History and `evaluate` (the bootstrap's records), from the spec's
`metrics:` patterns over the trial's output lines, from `gridtrial.report(...)` and from a
function's return value. Each metric's direction (is higher better?) comes from the spec
(`{pattern: ..., goal: max}`), else from its name (`*acc*`, `*_per_s` higher; `*loss*`, `*_s`,
`*_mib` lower); `grid compare` needs one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

GOALS = ("max", "min")
_HIGHER = re.compile(r"(_per_s$|(^|_)(acc|accuracy|auc|precision|recall|f1|iou|map|bleu|rouge|r2|score|"
                     r"throughput)(_|$))")
_LOWER = re.compile(r"((^|_)(loss|error|err|mae|mse|rmse|perplexity|ppl|latency|time|times)(_|$)|_s$|_mib$|_mb$)")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/-]{0,99}$")
_SPLIT = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class MetricPattern:
    name: str
    pattern: re.Pattern | None  # None: a value the trial reports itself; only its goal is declared
    goal: str | None = None

    def value(self, match: re.Match) -> float | str:
        """The `value` group, else the first group, else the whole match; a number when it reads as one."""
        if "value" in match.re.groupindex:
            text = match.group("value")
        else:
            text = match.group(1) if match.re.groups else match.group(0)
        try:
            return float(text)
        except (TypeError, ValueError):
            return text


def known_goal(name: str) -> str | None:
    """A metric's direction from its name, or None when the name does not tell."""
    lowered = name.lower()
    if _HIGHER.search(lowered):
        return "max"
    if _LOWER.search(lowered):
        return "min"
    return None


def parse_metrics(raw: Any, problems: list[str]) -> dict[str, MetricPattern]:
    """`metrics:` -> name: 'regex', name: {pattern: 'regex', goal: max|min}, or name: {goal: max|min}
    (the direction of a value the trial reports itself)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"metrics: received {json.dumps(raw, default=str)}, expected a mapping of metric name "
                        f"to a regular expression or {{pattern: ..., goal: max|min}}")
        return {}
    out = {}
    for name, spec in raw.items():
        path = f"metrics.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{path}: received {json.dumps(name, default=str)}, expected a name of letters, digits, "
                            f"'_', '.', ':', '/' or '-' starting with a letter (it becomes a column)")
            continue
        spec = {"pattern": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or not isinstance(spec.get("pattern", ""), str) or \
                not (spec.get("pattern") or spec.get("goal")):
            problems.append(f"{path}: received {json.dumps(spec, default=str)}, expected a regular expression, "
                            f"{{pattern: ..., goal: max|min}} or {{goal: max|min}}")
            continue
        unknown = sorted(set(spec) - {"pattern", "goal"})
        if unknown:
            problems.append(f"{path}: unknown key(s) {unknown}; valid keys are ['goal', 'pattern']")
        goal = spec.get("goal")
        if goal is not None and goal not in GOALS:
            problems.append(f"{path}.goal: received {json.dumps(goal, default=str)}, expected max or min")
        if "pattern" not in spec:
            out[name] = MetricPattern(name, None, goal)
            continue
        try:
            pattern = re.compile(spec["pattern"])
        except re.error as exc:
            problems.append(f"{path}: the pattern {spec['pattern']!r} does not compile: {exc}")
            continue
        if pattern.groups > 1 and "value" not in pattern.groupindex:
            problems.append(f"{path}: the pattern {spec['pattern']!r} has {pattern.groups} groups; keep one group "
                            f"around the value, or name it (?P<value>...)")
            continue
        out[name] = MetricPattern(name, pattern, goal)
    return out


def lines(path: str, offset: int = 0):
    """The file's lines from `offset` (\\n, \\r\\n and a progress bar's \\r all end a line)."""
    with open(path, "rb") as f:
        f.seek(offset)
        rest = b""
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            parts = _SPLIT.split(rest + chunk)
            rest = parts.pop()
            for part in parts:
                yield part.decode(errors="replace")
        if rest:
            yield rest.decode(errors="replace")


@dataclass
class Scan:
    values: dict[str, Any]
    series: dict[str, list]
    notes: list[str]


def scan(path: str, offset: int, patterns: dict[str, MetricPattern], epochs: int | None) -> Scan:
    """Every pattern over the output: the last match wins; all matches are kept as a per-epoch
    series when there is one per epoch."""
    patterns = {name: m for name, m in patterns.items() if m.pattern is not None}
    found: dict[str, list] = {name: [] for name in patterns}
    if patterns:
        try:
            for line in lines(path, offset):
                for name, metric in patterns.items():
                    match = metric.pattern.search(line)
                    if match:
                        found[name].append(metric.value(match))
        except OSError as exc:
            return Scan({}, {}, [f"metrics: the output log could not be read ({exc})"])
    result = Scan({}, {}, [])
    for name, matches in found.items():
        if not matches:
            result.values[name] = None
            result.notes.append(f"metric {name}: pattern {patterns[name].pattern.pattern!r} matched no output line")
            continue
        result.values[name] = matches if name == "epoch_times" else matches[-1]
        numeric = all(isinstance(v, float) for v in matches)
        if numeric and epochs and epochs > 1 and len(matches) == epochs:
            result.series[name] = matches
    return result
