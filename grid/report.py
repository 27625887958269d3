"""`grid report`: the latest attempt of every trial, grouped by config, repeats reduced to a median
and a min-max spread, as terminal tables, PNG plots and one self-contained HTML page.

A cell whose trials all failed says how ("oom", "timeout"), never 0; a metric nobody measured
(GPU memory on a CPU run) is "-". Only repeats of one config are ever aggregated: an axis that
varies but is neither a row nor a column is added to the rows.
"""

from __future__ import annotations

import collections
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from grid.errors import ResultsError, UsageError
from grid.results import BASE_NAMES, ResultStore, latest_attempts
from grid.workload import builtin_workloads

# The shoot-out: the question gpu-grid answers, one column per measurement.
SHOOTOUT_ROWS = ("backend", "memory_fraction")
SHOOTOUT_METRICS = (
    ("gpu_mem_peak_mib", "NVML MiB"),
    ("framework_peak_mib", "framework MiB"),
    ("steady_epoch_s", "epoch s"),
    ("images_per_s", "images/s"),
)
# Numeric columns that are settings or bookkeeping, not measurements.
NOT_METRICS = frozenset({"schema_version", "attempt", "repeat", "exit_code", "timeout_s", "memory_limit_mib",
                         "gpu_total_mib", "global_batch", "fit_calls", "processes"})
EXTRA_METRICS = 3  # the trial's own metrics (test_acc, ...) shown in the default table


@dataclass(frozen=True)
class Spread:
    """Repeats of one config: the median and the range they span."""

    median: float
    low: float
    high: float
    n: int


def spread(values: list[float]) -> Spread | None:
    return Spread(statistics.median(values), min(values), max(values), len(values)) if values else None


def fmt_number(value: float) -> str:
    """Three significant digits or more: 1234, 56.7, 1.23, 0.123."""
    size = abs(value)
    digits = 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3
    return f"{value:.{digits}f}"


def show(value: Any) -> str:
    """An axis value as written in a spec: null, true, 0.5, jax."""
    return value if isinstance(value, str) else json.dumps(value)


def sort_key(value: Any) -> tuple:
    return (value is not None, isinstance(value, str), value if value is not None else 0)


def trial_config(row: dict[str, Any]) -> dict[str, Any]:
    """The trial's config; rows of old schemas without `config_json` rebuild it from the param columns."""
    if row.get("config_json"):
        return json.loads(row["config_json"])
    workload = builtin_workloads().get(row.get("workload") or "")
    return {name: row.get(name) for name in workload.params} if workload else {}


# -- groups of repeats

@dataclass
class Group:
    key: tuple
    rows: list[dict[str, Any]] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [r[metric] for r in self.rows if r["status"] == "ok" and r.get(metric) is not None]

    def failures(self) -> collections.Counter:
        return collections.Counter(r["status"] for r in self.rows if r["status"] != "ok")

    def ok(self) -> int:
        return sum(r["status"] == "ok" for r in self.rows)


def group_rows(rows: list[dict[str, Any]], axes: list[str]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for row in rows:
        key = tuple(row["_config"].get(a) for a in axes)
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
    counts = collections.Counter({"ok": group.ok()}) + failures
    return Cell(counts_text(counts), "status-fail" if failures else "status-ok")


def own_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """The trials' own metrics with a value, declared and reported ones before Keras History's."""
    names: dict[str, None] = {}
    for row in rows:
        for name in json.loads(row.get("metric_goals_json") or "{}"):
            if isinstance(row.get(name), (int, float)) and not isinstance(row.get(name), bool):
                names[name] = None
    return list(names)


def shootout_table(rows: list[dict[str, Any]], row_axes: list[str], title: str) -> TableView:
    own = own_metrics(rows)
    metrics = [*SHOOTOUT_METRICS, *((m, m) for m in own[:EXTRA_METRICS])]
    headers = [*row_axes, *(label for _, label in metrics), "status"]
    body = [[*(Cell(show(v), "label") for v in g.key), *(metric_cell(g, m) for m, _ in metrics),
             status_cell(g)] for g in group_rows(rows, row_axes)]
    view = TableView(title, headers, body, len(row_axes))
    if len(own) > EXTRA_METRICS:
        view.notes.append(f"more metrics: {', '.join(own[EXTRA_METRICS:])} (pivot one with --metric NAME)")
    return view


def pivot_table(rows: list[dict[str, Any]], row_axes: list[str], col_axes: list[str], metric: str,
                title: str) -> TableView:
    columns = group_rows(rows, col_axes)
    headers = [*row_axes, *(" ".join(f"{a}={show(v)}" for a, v in zip(col_axes, c.key)) or metric for c in columns)]
    body = []
    for group in group_rows(rows, row_axes):
        cells = {c.key: Group(c.key) for c in columns}
        for row in group.rows:
            cells[tuple(row["_config"].get(a) for a in col_axes)].rows.append(row)
        body.append([*(Cell(show(v), "label") for v in group.key),
                     *(metric_cell(cells[c.key], metric) if cells[c.key].rows else Cell("", "none") for c in columns)])
    return TableView(title, headers, body, len(row_axes))


def busy_table(rows: list[dict[str, Any]], title: str) -> TableView | None:
    """How busy each worker (one GPU or CPU slot) was between the sweep's first start and last end."""
    spans = [(r["started_at"], r["ended_at"]) for r in rows if r.get("started_at") and r.get("ended_at")]
    if not spans:
        return None
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    wall = max((last - first).total_seconds(), 1e-9)
    busy: dict[tuple, list[float]] = collections.defaultdict(list)
    for row in rows:
        if row.get("started_at") and row.get("ended_at"):
            for worker in row.get("workers") or ["-"]:
                busy[(row.get("host") or "-", worker)].append((row["ended_at"] - row["started_at"]).total_seconds())
    body = [[Cell(host, "label"), Cell(worker, "label"), Cell(str(len(times))), Cell(fmt_number(sum(times))),
             Cell(f"{100 * sum(times) / wall:.0f}%")] for (host, worker), times in sorted(busy.items())]
    view = TableView(title, ["host", "worker", "trials", "busy s", "busy % of sweep"], body, 2)
    view.notes.append(f"sweep span {fmt_number(wall)} s, from the first trial's start to the last one's end "
                      f"(a resumed sweep's span includes the time between its runs)")
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
    plots: list = field(default_factory=list)  # grid.plots.Plot

    def failures(self) -> list[Failure]:
        """Failed trials, one entry per config and outcome: repeats that failed alike are one finding."""
        found: dict[tuple, Failure] = {}
        for row in sorted(self.rows, key=lambda r: tuple(sort_key(r["_config"].get(a)) for a in self.axes)):
            if row["status"] != "ok":
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
    """Numeric measurement columns, the trials' own metrics included: what --metric and
    `grid compare --metric` accept."""
    params = config_keys(table)
    return sorted(f.name for f in table.schema
                  if (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))
                  and f.name not in NOT_METRICS and f.name not in params)


def user_metrics(table: pa.Table) -> list[str]:
    """Metric columns that are the trials' own (History, patterns, reports), not gpu-grid's."""
    return [m for m in metrics_of(table) if m not in BASE_NAMES]


def _axes(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    keys: dict[str, set] = {}
    for row in rows:
        for k, v in row["_config"].items():
            keys.setdefault(k, set()).add(json.dumps(v, sort_keys=True))
    varying = [k for k, vals in keys.items() if len(vals) > 1]
    fixed = {k: json.loads(next(iter(vals))) for k, vals in keys.items() if len(vals) == 1}
    return varying, fixed


def _check_axes(names: list[str], known: list[str], flag: str) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"{flag}: received {','.join(unknown)}, "
                         f"expected axes of the trials' config: {', '.join(known)}")


def _with_rest(row_axes: list[str], col_axes: list[str], varying: list[str]) -> tuple[list[str], list[str]]:
    """Rows plus every varying axis not placed, so that a cell only ever holds repeats of one config."""
    rest = [a for a in varying if a not in row_axes and a not in col_axes]
    return row_axes + rest, rest


def sweep_report(sweep: str, rows: list[dict[str, Any]], opts: ReportOptions, metrics: list[str]) -> SweepReport:
    for row in rows:
        row["_config"] = trial_config(row)
    varying, fixed = _axes(rows)
    config_keys = list(dict.fromkeys(k for r in rows for k in r["_config"]))
    workloads = sorted({(r.get("target") if r.get("workload") in ("command", "function") else None)
                        or r.get("workload") or "?" for r in rows})
    report = SweepReport(sweep, ", ".join(workloads), rows, varying, fixed)
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
    return [sweep_report(name, by_sweep[name], opts, metrics) for name in sorted(by_sweep)]


def describe(row: dict[str, Any], axes: list[str]) -> str:
    return " ".join(f"{a}={show(row['_config'].get(a))}" for a in axes) or "(single config)"


def last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1][:200] if lines else ""


def failure_line(row: dict[str, Any]) -> str:
    """One line saying why an attempt failed: the error's own message, else the log's last line."""
    message = (row.get("error_message") or "").strip()
    return message.splitlines()[0][:200] if message else last_line(row.get("error_tail"))


# -- terminal

MAX_TERMINAL_ROWS = 200
_STYLE = {"value": "", "label": "bold", "none": "dim", "fail": "red", "status-ok": "green", "status-fail": "red"}


def rich_table(view: TableView, max_rows: int = MAX_TERMINAL_ROWS) -> Table:
    notes = view.notes + ([f"first {max_rows} of {len(view.rows)} rows; all in the HTML report"]
                          if len(view.rows) > max_rows else [])
    table = Table(title=view.title, title_justify="left", caption="; ".join(notes) or None, caption_justify="left")
    for i, header in enumerate(view.headers):
        table.add_column(header, justify="left" if i < view.labels else "right")
    for row in view.rows[:max_rows]:
        table.add_row(*(f"[{_STYLE[c.kind]}]{escape(c.text)}[/]" if _STYLE[c.kind] else escape(c.text) for c in row))
    return table


def print_report(reports: list[SweepReport], console: Console) -> None:
    for report in reports:
        fixed = ", ".join(f"{k}={show(v)}" for k, v in report.fixed.items())
        console.print(f"[bold]sweep {report.sweep}[/] ({report.workload}): {len(report.rows)} trials, "
                      f"{counts_text(report.status_counts())}; fixed: {fixed or '-'}", highlight=False)
        for view in report.tables:
            console.print(rich_table(view))
        for plot in report.plots:
            console.print(f"  plot {plot.title}: {plot.path or 'skipped: ' + plot.note}", highlight=False,
                          soft_wrap=True)
        failures = report.failures()
        for failure in failures[:MAX_TERMINAL_ROWS]:
            first = failure.rows[0]
            more = f" (+{len(failure.rows) - 1} more)" if len(failure.rows) > 1 else ""
            console.print(f"[red]{failure.label}[/] {escape(failure.config)} {failure.error_type}: "
                          f"{escape(failure_line(first))}\n    log: {first.get('log_path')}{more}",
                          highlight=False, soft_wrap=True)
        if len(failures) > MAX_TERMINAL_ROWS:
            console.print(f"... {len(failures) - MAX_TERMINAL_ROWS} more failed configs in the HTML report")


def write_report(reports: list[SweepReport], out: str, source: str) -> Path:
    """PNGs and index.html under `out`; returns the page's path."""
    from grid import html, plots

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for report in reports:
        report.plots = plots.sweep_plots(report.rows, report.axes, out_dir, prefix=report.sweep)
    page = out_dir / "index.html"
    page.write_text(html.render(reports, source))
    return page
