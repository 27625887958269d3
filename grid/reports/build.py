"""Each sweep's report from the latest attempt of every trial: the shoot-out table (the question
gpu-grid answers, one column per measurement), a pivot by any axis and metric, the workers'
busy time, and the failures. Only repeats of one config are ever aggregated: an axis that varies
but is neither a row nor a column is added to the rows.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from grid.errors import ResultsError, UsageError
from grid.reports.answers import Answers, answer_table, answers, pareto_table, seed_tables
from grid.reports.law import Law, fit_laws, law_table
from grid.reports.repeats import repeats_text
from grid.reports.searches import SearchResult, search_results, search_table
from grid.reports.table import (
    EXTRA_METRICS,
    Cell,
    Group,
    TableView,
    describe,
    fmt_number,
    group_rows,
    metric_cell,
    own_metrics,
    show,
    sort_key,
    split_keys,
    status_cell,
    trial_config,
)
from grid.reports.versions import earlier_text, split_versions
from grid.results.dedupe import latest_attempts
from grid.results.schema import metric_columns
from grid.results.store import ResultStore
from grid.shared import TrialStatus

# The shoot-out: the question gpu-grid answers, one column per measurement.
SHOOTOUT_ROWS = ("backend", "memory_fraction")
SHOOTOUT_METRICS = (
    ("gpu_mem_peak_mib", "NVML MiB"),
    ("framework_peak_mib", "framework MiB"),
    ("steady_epoch_s", "epoch s"),
    ("images_per_s", "images/s"),
)
ENERGY_METRICS = (("joules_per_image", "J/image"),)
# what every trial measures: shown where the epochs or GPU memory the shoot-out's columns need are not
FALLBACK_METRICS = (("wall_s", "wall s", "steady_epoch_s"), ("peak_rss_mib", "peak RSS MiB", "gpu_mem_peak_mib"))


def _measured(rows: list[dict[str, Any]], metric: str) -> bool:
    return any(r.get(metric) is not None for r in rows)


def shootout_table(rows: list[dict[str, Any]], row_axes: list[str], title: str) -> TableView:
    own = own_metrics(rows)
    shown = [m for m in SHOOTOUT_METRICS if _measured(rows, m[0])]  # none of them on CPU
    fallback = [(m, label) for m, label, instead in FALLBACK_METRICS if not _measured(rows, instead)]
    energy = [m for m in ENERGY_METRICS if _measured(rows, m[0])]  # GPUs only
    metrics = [*shown, *fallback, *energy, *((m, m) for m in own[:EXTRA_METRICS])]
    headers = [*row_axes, *(label for _, label in metrics), "status"]
    body = [
        [*(Cell(show(v), "label") for v in g.key), *(metric_cell(g, m) for m, _ in metrics), status_cell(g)]
        for g in group_rows(rows, row_axes)
    ]
    view = TableView(title, headers, body, len(row_axes), kind="shootout")
    if len(own) > EXTRA_METRICS:
        view.notes.append(f"more metrics: {', '.join(own[EXTRA_METRICS:])} (pivot one with --metric NAME)")
    return view


def pivot_table(
    rows: list[dict[str, Any]], row_axes: list[str], col_axes: list[str], metric: str, title: str
) -> TableView:
    columns = group_rows(rows, col_axes)
    headers = [*row_axes, *(" ".join(f"{a}={show(v)}" for a, v in zip(col_axes, c.key)) or metric for c in columns)]
    body = []
    for group in group_rows(rows, row_axes):
        cells = {c.key: Group(c.key) for c in columns}
        for row in group.rows:
            cells[tuple(row["_config"].get(a) for a in col_axes)].rows.append(row)
        body.append(
            [
                *(Cell(show(v), "label") for v in group.key),
                *(metric_cell(cells[c.key], metric) if cells[c.key].rows else Cell("", "none") for c in columns),
            ]
        )
    return TableView(title, headers, body, len(row_axes), kind="pivot")


def busy_table(rows: list[dict[str, Any]], title: str) -> TableView | None:
    """How busy each worker (one GPU or CPU slot) was between the sweep's first start and last end,
    and, where NVML measured it, how much of that time its GPU was computing: "busy 99%" must not
    hide "computing 6%"."""
    timed = [r for r in rows if r.get("started_at") and r.get("ended_at")]
    if not timed:
        return None
    first, last = min(r["started_at"] for r in timed), max(r["ended_at"] for r in timed)
    wall = max((last - first).total_seconds(), 1e-9)
    busy: dict[tuple, list[float]] = collections.defaultdict(list)
    computing: dict[tuple, float] = collections.defaultdict(float)
    measured = any(r.get("gpu_compute_s") is not None for r in timed)
    for row in timed:
        workers = row.get("workers") or ["-"]
        for worker in workers:
            key = (row.get("host") or "-", worker)
            busy[key].append((row["ended_at"] - row["started_at"]).total_seconds())
            computing[key] += (row.get("gpu_compute_s") or 0.0) / len(workers)
    headers = ["host", "worker", "trials", "busy s", "busy % of sweep"]
    headers += ["GPU computing s", "computing % of sweep"] if measured else []
    body = []
    for key, times in sorted(busy.items()):
        line = [Cell(key[0], "label"), Cell(key[1], "label"), Cell(str(len(times))), Cell(fmt_number(sum(times)))]
        line.append(Cell(f"{100 * sum(times) / wall:.0f}%"))
        if measured:
            line += [Cell(fmt_number(computing[key])), Cell(f"{100 * computing[key] / wall:.1f}%")]
        body.append(line)
    view = TableView(title, headers, body, 2, kind="busy")
    view.notes.append(
        f"sweep span {fmt_number(wall)} s, from the first trial's start to the last one's end "
        f"(a resumed sweep's span includes the time between its runs)"
    )
    if measured:
        total_busy = sum(sum(t) for t in busy.values()) / (wall * len(busy))
        total_computing = sum(computing.values()) / (wall * len(busy))
        view.notes.append(
            f"GPUs computing {100 * total_computing:.1f}% of the sweep on average, workers busy "
            f"{100 * total_busy:.0f}%: computing is NVML's utilisation (the share of time a kernel ran) "
            f"integrated over each trial; the rest of busy time is start-up, imports, compilation, "
            f"input and the host"
        )
    return view


# -- one sweep's report


@dataclass
class Failure:
    config: str
    status: str
    error_type: str
    rows: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return self.status if len(self.rows) == 1 else f"{self.status} x{len(self.rows)}"


@dataclass
class SweepReport:
    sweep: str
    workload: str
    rows: list[dict[str, Any]]
    axes: list[str]  # config keys that vary
    fixed: dict[str, Any]
    tables: list[TableView] = field(default_factory=list)
    plots: list = field(default_factory=list)  # drawn by the page: reports/plots.py's Plot
    answers: Answers = field(default_factory=Answers)
    searches: list[SearchResult] = field(default_factory=list)
    laws: list[Law] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The report's findings for machines (report.json): what the tables show, as data."""
        return {
            "sweep": self.sweep,
            "workload": self.workload,
            "trials": len(self.rows),
            "statuses": dict(self.status_counts()),
            "varying": self.axes,
            "fixed": self.fixed,
            "repeats": repeats_text(self.rows),
            **self.answers.as_json(),
            "searches": [s.as_json() for s in self.searches],
            "memory_law": [law.as_json() for law in self.laws],
            "plots": {p.name: str(p.path) if p.path else None for p in self.plots},
        }

    def table(self, kind: str) -> TableView:
        """The first table of a kind (shootout, pivot, busy, answer, search, pareto, law, seed)."""
        return next(t for t in self.tables if t.kind == kind)

    def failures(self) -> list[Failure]:
        """Failed trials, one entry per config and outcome: repeats that failed alike are one finding."""
        found: dict[tuple, Failure] = {}
        failed = [r for r in self.rows if r["status"] != TrialStatus.OK]
        for row in sorted(failed, key=lambda r: tuple(sort_key(r["_config"].get(a)) for a in self.axes)):
            key = (describe(row, self.axes), row["status"], row.get("error_type") or "")
            found.setdefault(key, Failure(*key, rows=[])).rows.append(row)
        return list(found.values())

    def status_counts(self) -> collections.Counter:
        return collections.Counter(r["status"] for r in self.rows)


@dataclass(frozen=True)
class ReportOptions:
    sweep: str | None = None
    rows: list[str] | None = None
    cols: list[str] | None = None
    metric: str | None = None


def config_keys(table: pa.Table) -> set[str]:
    """Every config key of the trials in a table (from `config_json`)."""
    if "config_json" not in table.column_names:
        return set()
    return {k for text in set(table.column("config_json").to_pylist()) if text for k in json.loads(text)}


def metrics_of(table: pa.Table) -> list[str]:
    """Numeric measurements, the trials' own metrics included: what --metric and
    `grid compare --metric` accept."""
    return metric_columns(table.schema, config_keys(table))


def _axes(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    return split_keys([row["_config"] for row in rows])


def _check_axes(names: list[str], known: list[str], flag: str) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"{flag}: received {','.join(unknown)}, expected axes of the trials' config: {', '.join(known)}"
        )


def _with_rest(row_axes: list[str], col_axes: list[str], varying: list[str]) -> tuple[list[str], list[str]]:
    """Rows plus every varying axis not placed, so that a cell only ever holds repeats of one config."""
    rest = [a for a in varying if a not in row_axes and a not in col_axes]
    return row_axes + rest, rest


def sweep_report(sweep: str, rows: list[dict[str, Any]], opts: ReportOptions, metrics: list[str]) -> SweepReport:
    for row in rows:
        row["_config"] = trial_config(row)
    varying, fixed = _axes(rows)
    config_keys = list(dict.fromkeys(k for r in rows for k in r["_config"]))
    workloads = sorted(
        {
            (r.get("target") if r.get("workload") in ("command", "function") else None) or r.get("workload") or "?"
            for r in rows
        }
    )
    report = SweepReport(sweep, ", ".join(workloads), rows, varying, fixed)
    _lead_with_answers(report)
    default_rows = [a for a in SHOOTOUT_ROWS if a in config_keys]
    row_axes = opts.rows if opts.rows is not None else default_rows
    _check_axes(row_axes + (opts.cols or []), config_keys, "--rows/--cols")
    shoot_rows, added = _with_rest(list(row_axes), [], varying)
    table = shootout_table(rows, shoot_rows, f"sweep {sweep}: median (min-max) of ok repeats, latest attempts")
    table.notes += [f"also varying, added to rows: {', '.join(added)}"] if added else []
    report.tables.append(table)
    if opts.cols or opts.metric:
        metric = opts.metric or "steady_epoch_s"
        if metric not in metrics:
            raise UsageError(f"--metric: received {metric!r}, expected one of: {', '.join(metrics)}")
        cols = list(opts.cols or [])
        pivot_rows, added = _with_rest([a for a in row_axes if a not in cols], cols, varying)
        pivot = pivot_table(rows, pivot_rows, cols, metric, f"sweep {sweep}: {metric}, median (min-max)")
        pivot.notes += [f"also varying, added to rows: {', '.join(added)}"] if added else []
        report.tables.append(pivot)
    busy = busy_table(rows, f"sweep {sweep}: worker busy time")
    if busy is not None:
        report.tables.append(busy)
    return report


def _lead_with_answers(report: SweepReport) -> None:
    """The answer first: fastest and leanest, the searches' boundaries, the Pareto front, the memory
    law, and the study's table from no cap down to the first failure."""
    rows, axes, sweep = report.rows, report.axes, report.sweep
    report.answers = answers(rows, axes)
    report.searches = search_results(rows, axes)
    report.laws = fit_laws(rows, axes)
    views = [
        answer_table(report.answers, f"sweep {sweep}"),
        search_table(rows, axes, f"sweep {sweep}"),
        pareto_table(report.answers, f"sweep {sweep}"),
        law_table(report.laws, f"sweep {sweep}"),
        *seed_tables(rows, axes, f"sweep {sweep}"),
    ]
    report.tables += [v for v in views if v is not None]


def build_report(store: ResultStore, opts: ReportOptions) -> list[SweepReport]:
    """Every sweep's report (or the one asked for), from the latest attempt of each trial."""
    table = store.read(opts.sweep)
    if table.num_rows == 0:
        sweeps = store.sweeps()
        if opts.sweep and sweeps:
            raise UsageError(f"--sweep: no sweep {opts.sweep!r} in {store.uri}; sweeps there: {', '.join(sweeps)}")
        raise ResultsError(f"no results in {store.uri}: run a sweep first (grid run SPEC --results {store.uri})")
    metrics = metrics_of(table)
    latest = latest_attempts(table).to_pylist()
    by_sweep: dict[str, list[dict]] = collections.defaultdict(list)
    for row in latest:
        by_sweep[row["sweep"]].append(row)
    reports = []
    for name in sorted(by_sweep):
        rows, earlier = split_versions(by_sweep[name])
        report = sweep_report(name, rows, opts, metrics)
        if earlier:
            report.tables[0].notes.append(earlier_text(name, earlier))
        reports.append(report)
    return reports
