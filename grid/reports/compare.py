"""`grid compare BASELINE CURRENT`: did a metric get worse, beyond noise?

The baseline is a history of accepted runs (grid/results/history.py; one results location is a
history of one run). Configs are joined on the trial's config (its `config_json`), never on
`trial_id`, which also hashes the repeat index. A config's repeats reduce to their median (the run
median); the noise is the spread of the run medians over the history, the repeats within runs a
second source (grid/reports/noise.py). A change is flagged only when the current run median moved
the wrong way by more than the threshold AND beyond the noise band; where the band is wider than the
threshold the verdict is `noisy`, as it is with fewer than 3 baseline runs (how far runs differ is
not known yet); a flagged change is a regression once re-runs of just that config (`--confirm K`)
move as far. A steady window too short to time is `noisy` too (results/window.py).
A config that was ok in the latest baseline run and is not ok now (oom, timeout, ...) is a regression.
A config of the baseline that the current run lacks makes the comparison incomplete (a gate must not
pass on what it did not see), and two runs with no config in common are refused: a spec that changed
would otherwise compare nothing and pass every night.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import statistics
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa
from rich.console import Console
from rich.table import Table

from grid.errors import ResultsError, UsageError
from grid.reports.build import metrics_of
from grid.reports.noise import MIN_RUNS, Noise, change_point, noise_of
from grid.reports.repeats import repeats_text
from grid.reports.sharing import shared, sharing_text
from grid.reports.table import (
    SHARED_KEY,
    counts_text,
    fmt_number,
    ok_values,
    show,
    sort_key,
    spread,
    trial_config,
)
from grid.reports.verdicts import (
    KINDS,
    NUMERIC_COLUMNS,
    Comparison,
    Side,
    Verdict,
    summary_line,
    varying_keys,
    verdict_cells,
    verdict_columns,
)
from grid.results.dedupe import latest_attempts
from grid.results.history import HistoryRun, check_keep, history_runs
from grid.results.schema import GOALS, known_goal
from grid.results.store import ResultStore
from grid.results.window import WINDOW_METRICS, is_short, why_short, window_of
from grid.shared import TrialStatus
from grid.spec.expand import canonical_config
from grid.text import plain


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
    history: int = 10  # the newest accepted runs of the baseline judged against


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


Group = tuple[dict[str, Any], list[dict[str, Any]]]  # a config and its rows in one run


def _groups(rows: list[dict[str, Any]], ignore: tuple[str, ...]) -> dict[str, Group]:
    """Config key -> (config, rows). `lost` attempts are infrastructure, not outcomes: left out."""
    grouped: dict[str, list[dict]] = collections.defaultdict(list)
    configs: dict[str, dict] = {}
    for row in rows:
        if row["status"] == TrialStatus.LOST:
            continue
        config = {k: v for k, v in trial_config(row).items() if k not in ignore}
        key = canonical_config(config)
        configs[key] = config
        grouped[key].append(row)
    return {key: (configs[key], group) for key, group in grouped.items()}


def side_of(rows: list[dict[str, Any]], metric: str) -> Side:
    return Side(dict(collections.Counter(r["status"] for r in rows)), spread(ok_values(rows, metric)))


class Judged(NamedTuple):
    kind: str
    reason: str
    change: float | None = None
    noise: Noise | None = None


def judge(
    runs: list[list[float]],
    last: Side,
    cur: Side,
    values: list[float],
    threshold: float,
    higher_better: bool,
    short: str | None = None,
) -> Judged:
    """One config present on both sides: `runs` holds each baseline run's ok values (oldest first),
    `last` the latest baseline run, `cur` the current run and `values` its ok values; `short` why its
    steady window is too short."""
    if last.all_ok and not cur.all_ok:
        return Judged("regression", f"status: ok -> {counts_text(collections.Counter(cur.statuses))}")
    if not last.any_ok and cur.all_ok:
        return Judged("improvement", f"status: {counts_text(collections.Counter(last.statuses))} -> ok")
    noise = noise_of(runs, values)
    if noise is None or cur.stats is None:
        where = (
            "either side"
            if noise is None and cur.stats is None
            else "the baseline"
            if noise is None
            else "the current run"
        )
        return Judged("unchanged", f"not measured in {where}")
    change = percent_change(noise.center, cur.stats.median)
    band = noise.band_pct
    if short:
        return Judged("noisy", short, change, noise)
    if abs(change) > max(threshold, band):
        direction = "worse" if (change < 0 if higher_better else change > 0) else "better"
        seen = _as_far_in_history(runs, cur.stats.median, worse=direction == "worse", higher_better=higher_better)
        why = (
            f"an accepted run of the baseline measured {fmt_number(seen)}, as far: unchanged code has done as much"
            if seen is not None
            else f"how far runs of unchanged code differ is unknown with {noise.runs} baseline "
            f"run{'s' if noise.runs != 1 else ''} (it takes {MIN_RUNS}): a run's repeats share its conditions"
            if noise.between_pct is None
            else None
        )
        if why is not None:
            return Judged(
                "noisy",
                f"{direction} by {change:+.1f}%, beyond {threshold:g}% and the noise band ±{band:.1f}% "
                f"({noise.source}), but {why}; would settle it: {noise.settle(threshold)}",
                change,
                noise,
            )
        kind = "regression" if direction == "worse" else "improvement"
        return Judged(
            kind, f"{direction} beyond {threshold:g}% and the noise band ±{band:.1f}% ({noise.source})", change, noise
        )
    if band <= threshold:
        return Judged("unchanged", f"within {threshold:g}% (noise band ±{band:.1f}%, {noise.source})", change, noise)
    return Judged(
        "noisy",
        f"noise band ±{band:.1f}% ({noise.source}) is wider than the {threshold:g}% threshold: a change of "
        f"{threshold:g}% cannot be told from noise; would settle it: {noise.settle(threshold)}",
        change,
        noise,
    )


def _as_far_in_history(runs: list[list[float]], current: float, worse: bool, higher_better: bool) -> float | None:
    """The median of a baseline run that lies as far as the current run's, in the same direction,
    if one does (None: the current run is beyond every run of the history). The band is a spread
    estimated from a few runs, which a few runs can underestimate (two close nights of three, on a
    machine with two speeds); a change that unchanged code has already shown is not a regression."""
    medians = [statistics.median(v) for v in runs if v]
    up = worse != higher_better  # the current value is above the baseline's
    beyond = [m for m in medians if (m >= current if up else m <= current)]
    if not beyond:
        return None
    return max(beyond) if up else min(beyond)


def percent_change(before: float, after: float) -> float:
    if before == after:
        return 0.0
    return (after - before) / abs(before) * 100 if before else math.copysign(math.inf, after - before)


def _short_window(rows: list[dict[str, Any]], metric: str) -> str | None:
    """Why the steady windows behind a steady-epoch metric are too short to time, if they are."""
    if metric not in WINDOW_METRICS:
        return None
    windows = [window_of(r) for r in rows if r["status"] == TrialStatus.OK]
    known = [(w, s) for w, s in windows if w is not None]
    if not known:
        return None
    seconds = statistics.median(w for w, _ in known)
    steps_known = [s for _, s in known if s is not None]
    steps = int(statistics.median(steps_known)) if steps_known else None
    return why_short(seconds, steps) if is_short(seconds, steps) else None


def _read(uri: str, wanted: str | None, role: str) -> tuple[str, pa.Table]:
    store = ResultStore(uri)
    sweep = pick_sweep(store, wanted, role)
    return sweep, store.read(sweep)


def compare(baseline_uri: str, current_uri: str, opts: CompareOptions) -> Comparison:
    threshold = parse_threshold(opts.threshold)
    runs = history_runs(baseline_uri, check_keep(opts.history))
    if not runs:
        raise ResultsError(
            f"baseline {baseline_uri}: no results there (expected runs/<UTC time>/ of a history, or sweep=<name>/ "
            f"folders of Parquet files)"
        )
    base = [_read(run.uri, opts.baseline_sweep, "baseline") for run in runs]
    cur_sweep, cur_table = _read(current_uri, opts.current_sweep, "current")
    _check_metric(opts.metric, [base[-1][1], cur_table], baseline_uri, current_uri)
    base_rows = [latest_attempts(t).to_pylist() for _, t in base]
    cur_rows = latest_attempts(cur_table).to_pylist()
    _check_ignore(opts.ignore, base_rows[-1] + cur_rows)
    goal = goal_of(opts.metric, cur_rows + base_rows[-1], opts.goal)
    base_groups = [_groups(r, opts.ignore) for r in base_rows]
    cur = _groups(cur_rows, opts.ignore)
    last = base_groups[-1]
    if last and cur and not set(last) & set(cur):
        raise UsageError(_nothing_in_common(last, cur, [base_rows[-1], cur_rows], baseline_uri, current_uri))
    result = Comparison(
        opts.metric,
        threshold,
        {"uri": baseline_uri, "sweep": base[-1][0]},
        {"uri": current_uri, "sweep": cur_sweep},
        goal,
        allow_missing=opts.allow_missing,
        runs=[r.name for r in runs],
    )
    for key in sorted(set(last) | set(cur)):
        history = [g[key][1] for g in base_groups if key in g]
        result.verdicts.append(_verdict(last.get(key), history, cur.get(key), opts.metric, threshold, goal == "max"))
    result.verdicts.sort(key=lambda v: (KINDS.index(v.kind), *(sort_key(v.config.get(k)) for k in sorted(v.config))))
    result.notes += history_notes(runs)
    how = repeats_text(cur_rows)
    if how:
        result.notes.append(f"this run's {how}")
    return result


def history_notes(runs: list[HistoryRun]) -> list[str]:
    if len(runs) >= MIN_RUNS:
        return []
    return [
        f"{len(runs)} baseline run{'s' if len(runs) != 1 else ''}: the spread between runs is unknown (it takes "
        f"{MIN_RUNS}), so each config is judged against the repeats within a run, doubled, and a change beyond "
        f"them is noisy, not a regression: the repeats of one run share its conditions and say little about the "
        f"next run's. Keep accepted runs (grid compare --accept) for a verdict that knows its noise"
    ]


def _verdict(
    last: Group | None,
    history: list[list[dict[str, Any]]],
    cur: Group | None,
    metric: str,
    threshold: float,
    higher_better: bool,
) -> Verdict:
    if last is None:
        assert cur is not None, "a config is on one side at least"
        return Verdict(cur[0], "new", "not in the latest baseline run", None, side_of(cur[1], metric))
    runs = [ok_values(rows, metric) for rows in history]
    medians = [statistics.median(v) for v in runs if v]
    baseline = Side(side_of(last[1], metric).statuses, spread(medians))
    if cur is None:
        return Verdict(last[0], "missing", "in the baseline, not in the current run", baseline, None, runs=runs)
    current = side_of(cur[1], metric)
    values = ok_values(cur[1], metric)
    judged = judge(
        runs, side_of(last[1], metric), current, values, threshold, higher_better, _short_window(cur[1], metric)
    )
    moved = None
    if judged.noise is not None and values:
        moved = change_point([*medians, statistics.median(values)], judged.noise.band_pct)
    return Verdict(
        last[0],
        judged.kind,
        judged.reason,
        baseline,
        current,
        judged.change,
        judged.noise,
        runs,
        values,
        moved_at=moved,
    )


def confirm(result: Comparison, reruns: list[str], opts: CompareOptions) -> None:
    """Judge the flagged regressions again on re-runs of just those configs (results locations): one
    stays a regression only if the re-runs' median moved as far; else it is `noisy`."""
    tables = [
        latest_attempts(_read(uri, opts.current_sweep or result.current["sweep"], "confirm")[1]) for uri in reruns
    ]
    groups = [_groups(t.to_pylist(), opts.ignore) for t in tables]
    for i, v in enumerate(result.verdicts):
        if v not in result.flagged():
            continue
        key = canonical_config(v.config)
        again = [ok_values(g[key][1], result.metric) if key in g else [] for g in groups]
        pooled = [x for values in again for x in values]
        assert v.noise is not None and v.change_pct is not None
        bar = max(result.threshold_pct, v.noise.band_pct)
        change = percent_change(v.noise.center, statistics.median(pooled)) if pooled else None
        held = change is not None and abs(change) > bar and (change > 0) == (v.change_pct > 0)
        seen = "no ok value" if change is None else f"{change:+.1f}%"
        reason = (
            f"{v.reason}; confirmed by {len(reruns)} re-run(s): {seen}"
            if held
            else f"flagged {v.change_pct:+.1f}% (band ±{v.noise.band_pct:.1f}%), not confirmed: {len(reruns)} "
            f"re-run(s) measured {seen}"
        )
        result.verdicts[i] = dataclasses.replace(
            v, kind="regression" if held else "noisy", reason=reason, confirm_values=again, confirmed=held
        )
    result.verdicts.sort(key=lambda v: (KINDS.index(v.kind), *(sort_key(v.config.get(k)) for k in sorted(v.config))))


def _nothing_in_common(
    base: dict[str, Group], cur: dict[str, Group], rows: list[list[dict[str, Any]]], *uris: str
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

_STYLE = {
    "regression": "bold red",
    "noisy": "magenta",
    "improvement": "green",
    "unchanged": "",
    "missing": "yellow",
    "new": "cyan",
}


def print_comparison(result: Comparison, console: Console) -> None:
    keys = varying_keys(result.verdicts)
    table = Table(
        title=plain(
            f"{result.metric}: baseline {result.baseline['uri']} (sweep {result.baseline['sweep']}) vs "
            f"current {result.current['uri']} (sweep {result.current['sweep']})"
        ),
        title_justify="left",
    )
    for name in ("verdict", *verdict_columns(keys)):
        table.add_column(plain(name), justify="right" if name in NUMERIC_COLUMNS else "left")
    for v in result.verdicts:
        table.add_row(plain(v.kind, _STYLE[v.kind]), *(plain(c) for c in verdict_cells(result, v, keys)))
    console.print(table)
    for note in result.notes:
        console.print(plain(f"note: {note}"), highlight=False, soft_wrap=True)
    style = {"regression": "bold red", "incomplete": "bold yellow", "noisy": "magenta", "ok": "green"}[result.verdict]
    console.print(plain(summary_line(result), style), highlight=False, soft_wrap=True)


def acceptable(result: Comparison) -> str | None:
    """Why the current run may not enter the history (None: it may): a failed or incomplete night never
    does, nor one that regressed."""
    if result.verdict not in ("ok", "noisy"):
        return f"the verdict is {result.verdict}"
    failed = [v for v in result.verdicts if v.current is not None and not v.current.all_ok]
    if failed:
        return f"{len(failed)} config(s) had trials that did not end ok"
    if any(v.kind == "missing" for v in result.verdicts):
        return "it lacks configs of the baseline"
    return None
