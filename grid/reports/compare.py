"""`grid compare BASELINE CURRENT`: did a metric get worse, beyond noise?

Configs are joined on the trial's config (its `config_json`), never on `trial_id`, which also
hashes the repeat index. A config's repeats reduce to the median and the min-max range of its
ok attempts. A change is a regression only when the median moved the wrong way by more than the
threshold AND the two ranges do not overlap: a change inside the repeats' own spread is noise.
A config that was ok in the baseline and is not ok now (oom, timeout, ...) is a regression too.
A config of the baseline that the current run lacks makes the comparison incomplete (a gate must not
pass on what it did not see), and two runs with no config in common are refused: a spec that changed
would otherwise compare nothing and pass every night.
"""

from __future__ import annotations

import collections
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.table import Table

from grid.errors import ResultsError, UsageError
from grid.reports.build import metrics_of
from grid.reports.sharing import shared, sharing_text
from grid.reports.table import (
    SHARED_KEY,
    Spread,
    counts_text,
    fmt_number,
    ok_values,
    show,
    sort_key,
    split_keys,
    spread,
    trial_config,
)
from grid.results.dedupe import latest_attempts
from grid.results.schema import GOALS, known_goal
from grid.results.store import ResultStore
from grid.shared import TrialStatus
from grid.spec.expand import canonical_config
from grid.text import plain

KINDS = ("regression", "improvement", "unchanged", "missing", "new")
_PLURAL = {"regression": "regressions", "improvement": "improvements"}


def goal_of(metric: str, rows: list[dict[str, Any]], given: str | None = None) -> str:
    """Is higher or lower better: `--goal`, else the spec's `metrics:` goal recorded in the rows, else
    the metric's name (`*_per_s`, `*acc*` higher; times, memory, `*loss*` lower)."""
    if given is not None:
        if given not in GOALS:
            raise UsageError(f"--goal: received {given!r}, expected max or min")
        return given
    for row in rows:
        goal = json.loads(row.get("metric_goals_json") or "{}").get(metric)
        if goal:
            return goal
    goal = known_goal(metric)
    if goal is None:
        raise UsageError(
            f"--metric {metric}: gpu-grid cannot tell whether higher or lower is better; declare it "
            f"in the spec (metrics: {{{metric}: {{pattern: ..., goal: max}}}}) or pass --goal max|min"
        )
    return goal


def parse_threshold(text: str | float) -> float:
    """'5%', '5' or 5 -> 5.0 (percent)."""
    raw = str(text).strip().removesuffix("%")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise UsageError(f"--threshold: received {text!r}, expected a percentage >= 0 such as 5% or 2.5")
    return value


@dataclass(frozen=True)
class CompareOptions:
    metric: str = "steady_epoch_s"
    threshold: str | float = "5%"
    goal: str | None = None  # max | min; None: from the spec's metrics or the metric's name
    baseline_sweep: str | None = None
    current_sweep: str | None = None
    ignore: tuple[str, ...] = ()  # config keys left out of the join
    allow_missing: bool = False  # configs of the baseline absent from the current run do not fail it


@dataclass(frozen=True)
class Side:
    """One config's repeats on one side: their outcomes and the metric's spread over the ok ones."""

    statuses: dict[str, int]
    stats: Spread | None

    @property
    def all_ok(self) -> bool:
        return set(self.statuses) == {TrialStatus.OK}

    @property
    def any_ok(self) -> bool:
        return TrialStatus.OK in self.statuses

    def text(self) -> str:
        value = "-" if self.stats is None else fmt_number(self.stats.median)
        if self.stats is not None and self.stats.n > 1:
            value += f" ({fmt_number(self.stats.low)}-{fmt_number(self.stats.high)})"
        return value if self.all_ok else f"{value} [{counts_text(collections.Counter(self.statuses))}]"


@dataclass(frozen=True)
class Verdict:
    config: dict[str, Any]
    kind: str  # one of KINDS
    reason: str
    baseline: Side | None
    current: Side | None
    change_pct: float | None = None


@dataclass
class Comparison:
    metric: str
    threshold_pct: float
    baseline: dict[str, str]  # uri, sweep
    current: dict[str, str]
    goal: str = "min"
    verdicts: list[Verdict] = field(default_factory=list)
    allow_missing: bool = False

    @property
    def higher_is_better(self) -> bool:
        return self.goal == "max"

    @property
    def regressed(self) -> bool:
        return any(v.kind == "regression" for v in self.verdicts)

    @property
    def incomplete(self) -> bool:
        """Configs of the baseline that the current run lacks, and they were not allowed to."""
        return not self.allow_missing and any(v.kind == "missing" for v in self.verdicts)

    @property
    def verdict(self) -> str:
        return "regression" if self.regressed else "incomplete" if self.incomplete else "ok"

    @property
    def exit_code(self) -> int:
        """0 ok, 1 regression, 3 incomplete (2 is bad input, raised before a Comparison exists)."""
        return {"ok": 0, "regression": 1, "incomplete": 3}[self.verdict]

    def counts(self) -> dict[str, int]:
        found = collections.Counter(v.kind for v in self.verdicts)
        return {kind: found.get(kind, 0) for kind in KINDS}

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "threshold_pct": self.threshold_pct,
            "baseline": self.baseline,
            "current": self.current,
            "allow_missing": self.allow_missing,
            "counts": self.counts(),
            "configs": [{**asdict(v), "change_pct": _finite(v.change_pct)} for v in self.verdicts],
        }


def _finite(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else str(value)  # JSON has no Infinity


def pick_sweep(store: ResultStore, wanted: str | None, role: str) -> str:
    sweeps = store.sweeps()
    if not sweeps:
        raise ResultsError(f"{role} {store.uri}: no results there (expected sweep=<name>/ folders of Parquet files)")
    if wanted is not None:
        if wanted not in sweeps:
            raise UsageError(f"{role} sweep: received {wanted!r}, expected one of {', '.join(sweeps)} in {store.uri}")
        return wanted
    if len(sweeps) > 1:
        raise UsageError(
            f"{role} {store.uri} holds sweeps {', '.join(sweeps)}: pick one with --sweep, "
            f"or --{role}-sweep when the two names differ"
        )
    return sweeps[0]


def _sides(rows: list[dict[str, Any]], metric: str, ignore: tuple[str, ...]) -> dict[str, tuple[dict, Side]]:
    """Config key -> (config, Side). `lost` attempts are infrastructure, not outcomes: left out."""
    grouped: dict[str, list[dict]] = collections.defaultdict(list)
    configs: dict[str, dict] = {}
    for row in rows:
        if row["status"] == TrialStatus.LOST:
            continue
        config = {k: v for k, v in trial_config(row).items() if k not in ignore}
        key = canonical_config(config)
        configs[key] = config
        grouped[key].append(row)
    return {key: (configs[key], side_of(group, metric)) for key, group in grouped.items()}


def side_of(rows: list[dict[str, Any]], metric: str) -> Side:
    return Side(dict(collections.Counter(r["status"] for r in rows)), spread(ok_values(rows, metric)))


def judge(base: Side, cur: Side, threshold: float, higher_better: bool) -> tuple[str, str, float | None]:
    """(kind, reason, change in percent) for one config present on both sides."""
    if base.all_ok and not cur.all_ok:
        return "regression", f"status: ok -> {counts_text(collections.Counter(cur.statuses))}", None
    if not base.any_ok and cur.all_ok:
        return "improvement", f"status: {counts_text(collections.Counter(base.statuses))} -> ok", None
    if base.stats is None or cur.stats is None:
        where = (
            "either side" if base.stats == cur.stats else "the baseline" if base.stats is None else "the current run"
        )
        return "unchanged", f"not measured in {where}", None
    b, c = base.stats, cur.stats
    change = percent_change(b.median, c.median)
    worse = change < 0 if higher_better else change > 0
    if abs(change) <= threshold:
        return "unchanged", f"within {threshold:g}%", change
    if c.low <= b.high and b.low <= c.high:
        return "unchanged", f"beyond {threshold:g}%, inside the repeats' spread", change
    if worse:
        return "regression", "worse beyond the repeats' spread", change
    return "improvement", "better beyond the repeats' spread", change


def percent_change(before: float, after: float) -> float:
    if before == after:
        return 0.0
    return (after - before) / abs(before) * 100 if before else math.copysign(math.inf, after - before)


def compare(baseline_uri: str, current_uri: str, opts: CompareOptions) -> Comparison:
    threshold = parse_threshold(opts.threshold)
    stores = ResultStore(baseline_uri), ResultStore(current_uri)
    sweeps = (
        pick_sweep(stores[0], opts.baseline_sweep, "baseline"),
        pick_sweep(stores[1], opts.current_sweep, "current"),
    )
    tables = [store.read(sweep) for store, sweep in zip(stores, sweeps)]
    _check_metric(opts.metric, tables, baseline_uri, current_uri)
    rows = [latest_attempts(t).to_pylist() for t in tables]
    _check_ignore(opts.ignore, rows[0] + rows[1])
    goal = goal_of(opts.metric, rows[1] + rows[0], opts.goal)
    base, cur = (_sides(r, opts.metric, opts.ignore) for r in rows)
    if base and cur and not set(base) & set(cur):
        raise UsageError(_nothing_in_common(base, cur, rows, baseline_uri, current_uri))
    result = Comparison(
        opts.metric,
        threshold,
        {"uri": baseline_uri, "sweep": sweeps[0]},
        {"uri": current_uri, "sweep": sweeps[1]},
        goal,
        allow_missing=opts.allow_missing,
    )
    for key in sorted(set(base) | set(cur)):
        result.verdicts.append(_verdict(base.get(key), cur.get(key), threshold, result.higher_is_better))
    result.verdicts.sort(key=lambda v: (KINDS.index(v.kind), *(sort_key(v.config.get(k)) for k in sorted(v.config))))
    return result


def _verdict(
    base: tuple[dict, Side] | None, cur: tuple[dict, Side] | None, threshold: float, higher_better: bool
) -> Verdict:
    if base is None:
        assert cur is not None, "a config is on one side at least"
        return Verdict(cur[0], "new", "not in the baseline", None, cur[1])
    if cur is None:
        return Verdict(base[0], "missing", "in the baseline, not in the current run", base[1], None)
    kind, reason, change = judge(base[1], cur[1], threshold, higher_better)
    return Verdict(base[0], kind, reason, base[1], cur[1], change)


def _nothing_in_common(
    base: dict[str, tuple[dict, Side]], cur: dict[str, tuple[dict, Side]], rows: list[list[dict]], *uris: str
) -> str:
    """Why no config joins: the keys whose values differ between the two runs, and what to do."""
    values: list[dict[str, set[str]]] = [collections.defaultdict(set), collections.defaultdict(set)]
    for seen, side in zip(values, (base, cur)):
        for config, _ in side.values():
            for key, value in config.items():
                seen[key].add(show(value))
    keys = sorted(set(values[0]) | set(values[1]))
    # a key whose values the two runs do not share at all is what keeps every config apart
    differ = [k for k in keys if not values[0].get(k, set()) & values[1].get(k, set())] or [
        k for k in keys if values[0].get(k) != values[1].get(k)
    ]
    detail = "; ".join(
        f"{k}: baseline {', '.join(sorted(values[0][k])) or '(absent)'}, "
        f"current {', '.join(sorted(values[1][k])) or '(absent)'}"
        for k in differ
    )
    why = f"no config of the current run {uris[1]} is in the baseline {uris[0]}, so nothing can be compared"
    if SHARED_KEY in differ:
        said = "; ".join(
            f"{role} {uri}: {len(shared(side))} of {len(side)} trial(s) shared a GPU"
            + (f": {sharing_text(side)}" if shared(side) else "")
            for role, uri, side in zip(("baseline", "current"), uris, rows)
        )
        return (
            f"{why}: shared timings are never compared with a GPU's own ({SHARED_KEY}); {said}. Run both the same way"
        )
    return (
        f"{why} (the spec changed?). They differ in {detail}. If that change is meant, recreate the baseline "
        f"from a run of the new spec, or leave the key out of the join with --ignore {','.join(differ)}"
    )


def _check_metric(metric: str, tables: list[pa.Table], *uris: str) -> None:
    known = sorted(set(metrics_of(tables[0])) | set(metrics_of(tables[1])))
    if metric not in known:
        raise UsageError(f"--metric: received {metric!r}, expected one of: {', '.join(known)}")
    measured = [m for m in known if any(_has_values(t, m) for t in tables)]
    if not any(_has_values(t, metric) for t in tables):
        raise ResultsError(
            f"no ok trial in {uris[0]} or {uris[1]} measured {metric}; "
            f"measured metrics: {', '.join(measured) or 'none'} (choose one with --metric)"
        )


def _has_values(table: pa.Table, metric: str) -> bool:
    if metric not in table.column_names:
        return False
    values, statuses = table.column(metric).to_pylist(), table.column("status").to_pylist()
    return any(v is not None and s == TrialStatus.OK for v, s in zip(values, statuses))


def _check_ignore(ignore: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    if SHARED_KEY in ignore:
        raise UsageError(
            f"--ignore: {SHARED_KEY} keeps the timings of trials that shared a GPU apart from a GPU's own; "
            f"it cannot be left out of the join"
        )
    keys = {k for r in rows for k in trial_config(r)}
    unknown = [k for k in ignore if k not in keys]
    if unknown:
        raise UsageError(f"--ignore: received {','.join(unknown)}, expected config keys: {', '.join(sorted(keys))}")


# -- output

_STYLE = {"regression": "bold red", "improvement": "green", "unchanged": "", "missing": "yellow", "new": "cyan"}


def varying_keys(verdicts: list[Verdict]) -> list[str]:
    return sorted(split_keys([v.config for v in verdicts])[0])


def summary_line(result: Comparison) -> str:
    direction = "higher" if result.higher_is_better else "lower"
    counts = ", ".join(f"{n} {_PLURAL.get(kind, kind) if n != 1 else kind}" for kind, n in result.counts().items())
    verdict = {
        "regression": "REGRESSION",
        "incomplete": "INCOMPLETE: the current run lacks configs of the baseline (--allow-missing to accept that)",
        "ok": "no regression",
    }[result.verdict]
    return (
        f"{result.metric} ({direction} is better), threshold {result.threshold_pct:g}% beyond the repeats' "
        f"spread: {counts} -> {verdict}"
    )


def print_comparison(result: Comparison, console: Console) -> None:
    keys = varying_keys(result.verdicts)
    table = Table(
        title=plain(
            f"{result.metric}: baseline {result.baseline['uri']} (sweep {result.baseline['sweep']}) vs "
            f"current {result.current['uri']} (sweep {result.current['sweep']})"
        ),
        title_justify="left",
    )
    for name in ("verdict", *keys, "baseline", "current", "change", "why"):
        table.add_column(plain(name), justify="right" if name in ("baseline", "current", "change") else "left")
    for v in result.verdicts:
        change = "-" if v.change_pct is None else f"{v.change_pct:+.1f}%"
        sides = (v.baseline.text() if v.baseline else "-", v.current.text() if v.current else "-")
        cells = [*(show(v.config.get(k)) for k in keys), *sides, change, v.reason]
        table.add_row(plain(v.kind, _STYLE[v.kind]), *(plain(c) for c in cells))
    console.print(table)
    style = {"regression": "bold red", "incomplete": "bold yellow", "ok": "green"}[result.verdict]
    console.print(plain(summary_line(result), style), highlight=False, soft_wrap=True)


def write_json(result: Comparison, path: str) -> None:
    with open(path, "w") as f:
        json.dump(result.to_json(), f, indent=2, default=str)
        f.write("\n")
