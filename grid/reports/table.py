"""The table model shared by the terminal, the HTML page and `grid compare`: repeats of one
config grouped and reduced to a median with its min-max spread, cells that say how a config
failed ("oom x2") instead of showing 0, or "-" for what nobody measured.
"""

from __future__ import annotations

import collections
import json
import statistics
from dataclasses import dataclass, field
from typing import Any

from grid.shared import TrialStatus
from grid.spec.workloads import builtin_workloads

EXTRA_METRICS = 3  # the trials' own metrics (test_acc, ...) shown in the default tables


@dataclass(frozen=True)
class Spread:
    """Repeats of one config: the median and the range they span."""

    median: float
    low: float
    high: float
    n: int


def spread(values: list[float]) -> Spread | None:
    return Spread(statistics.median(values), min(values), max(values), len(values)) if values else None


def ok_values(rows: list[dict[str, Any]], metric: str) -> list[float]:
    """The metric's values in the rows that ended ok (a failed run's figures stand for nothing)."""
    return [r[metric] for r in rows if r["status"] == TrialStatus.OK and r.get(metric) is not None]


def median_ok(rows: list[dict[str, Any]], metric: str) -> float | None:
    values = ok_values(rows, metric)
    return statistics.median(values) if values else None


def split_keys(configs: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """The keys whose value differs between configs (a key some lack varies between null and its
    value), in the order first seen, and the one value of each key that does not."""
    names = list(dict.fromkeys(k for config in configs for k in config))
    varying = [k for k in names if _varies([c.get(k) for c in configs])]
    fixed = {k: json.loads(json.dumps(configs[0].get(k), sort_keys=True)) for k in names if k not in varying}
    return varying, fixed


def _varies(values: list[Any]) -> bool:
    """Whether two values differ as `_token` tells them apart; a value of the first one's type that
    equals it is the same without a token (the common case, made cheap: a 10,000-trial report
    compares 100,000 values)."""
    first, kind = values[0], type(values[0])
    simple = kind not in (list, dict)  # equal containers can differ as JSON ([1] and [1.0])
    token = None
    for value in values:
        if value is first or (simple and type(value) is kind and value == first):
            continue
        token = _token(first) if token is None else token
        if _token(value) != token:
            return True
    return False


def _token(value: Any) -> Any:
    """A value as JSON tells values apart (1, 1.0 and true are three; a NaN equals a NaN), cheaply:
    only containers are written out (a 10,000-trial report compares 100,000 values)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return (type(value), "NaN" if value != value else value)


def fmt_number(value: float) -> str:
    """Three significant digits or more: 1234, 56.7, 1.23, 0.123."""
    size = abs(value)
    digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3
    return f"{value:.{digits}f}"


def show(value: Any) -> str:
    """An axis value as written in a spec: null, true, 0.5, jax (as JSON writes it; the common
    kinds without json.dumps, which is most of the time of a 10,000-trial report's tables)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        return int.__repr__(value)
    if value is None or kind is bool:
        return "null" if value is None else "true" if value else "false"
    return json.dumps(value)


def sort_key(value: Any) -> tuple:
    return (value is not None, isinstance(value, str), value if value is not None else 0)


SHARED_KEY = "gpu_shared"  # in the config of a trial that shared its GPU: its timings are never mixed with others'


def trial_config(row: dict[str, Any]) -> dict[str, Any]:
    """The trial's config; rows of old schemas without `config_json` rebuild it from the param columns.
    A trial that shared its GPU gets `gpu_shared: true`: tables group it apart, and `grid compare`
    never joins its timings with those of a trial that had its GPU to itself."""
    if row.get("config_json"):
        config = json.loads(row["config_json"])
    else:
        workload = builtin_workloads().get(row.get("workload") or "")
        config = {name: row.get(name) for name in workload.params} if workload else {}
    if row.get("shared_with"):
        config[SHARED_KEY] = True
    return config


# -- groups of repeats


@dataclass
class Group:
    key: tuple
    rows: list[dict[str, Any]] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return ok_values(self.rows, metric)

    def failures(self) -> collections.Counter:
        return collections.Counter(r["status"] for r in self.rows if r["status"] != TrialStatus.OK)

    def ok(self) -> int:
        return sum(r["status"] == TrialStatus.OK for r in self.rows)


def group_rows(rows: list[dict[str, Any]], axes: list[str]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for row in rows:
        config = row["_config"]
        key = tuple([config.get(a) for a in axes])
        groups.setdefault(key, Group(key)).rows.append(row)
    return [groups[k] for k in sorted(groups, key=lambda k: tuple(sort_key(v) for v in k))]


def counts_text(counter: collections.Counter) -> str:
    """'oom', 'oom x3' or '2 ok, 1 timeout'."""
    counts = sorted((s, n) for s, n in counter.items() if n)
    if len(counts) == 1:
        status, n = counts[0]
        return status if n == 1 else f"{status} x{n}"
    return ", ".join(f"{n} {status}" for status, n in counts)


# -- table model shared by the terminal and the HTML page


@dataclass(frozen=True)
class Cell:
    text: str
    kind: str = "value"  # value | label | none | fail | status-ok | status-fail


@dataclass
class TableView:
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    labels: int  # leading columns that name the row
    notes: list[str] = field(default_factory=list)
    kind: str = ""  # what it shows: answer, search, pareto, law, seed, shootout, pivot, busy


def metric_cell(group: Group, metric: str) -> Cell:
    """Median (min-max) of the ok repeats; the failure when none is ok; '-' when not measured."""
    failures = group.failures()
    if not group.ok():
        return Cell(counts_text(failures), "fail")
    stats = spread(group.values(metric))
    if stats is None:
        return Cell("-", "none")
    text = fmt_number(stats.median)
    if stats.n > 1:
        text += f" ({fmt_number(stats.low)}-{fmt_number(stats.high)})"
    if failures:
        text += f" +{counts_text(failures)}"
    return Cell(text)


def status_cell(group: Group) -> Cell:
    failures = group.failures()
    counts = collections.Counter({TrialStatus.OK.value: group.ok()}) + failures
    return Cell(counts_text(counts), "status-fail" if failures else "status-ok")


def own_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """The trials' own metrics with a value, declared and reported ones before Keras History's."""
    names: dict[str, None] = {}
    for row in rows:
        for name in json.loads(row.get("metric_goals_json") or "{}"):
            if isinstance(row.get(name), (int, float)) and not isinstance(row.get(name), bool):
                names[name] = None
    return list(names)


def describe(row: dict[str, Any], axes: list[str]) -> str:
    return " ".join(f"{a}={show(row['_config'].get(a))}" for a in axes) or "(single config)"


def last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1][:200] if lines else ""


def failure_line(row: dict[str, Any]) -> str:
    """One line saying why an attempt failed: the error's own message, else the log's last line."""
    message = (row.get("error_message") or "").strip()
    return message.splitlines()[0][:200] if message else last_line(row.get("error_tail"))
