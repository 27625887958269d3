"""Terminal tables over result rows: the end-of-run summary and `grid status`."""

from __future__ import annotations

import collections
import json
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.table import Table
from rich.text import Text

from grid.reports.answers import answer_lines, answers
from grid.reports.table import EXTRA_METRICS, failure_line, own_metrics, trial_config
from grid.reports.versions import earlier_text, split_versions
from grid.results.dedupe import latest_attempts
from grid.results.row import Row
from grid.shared import TrialStatus
from grid.text import make_console, plain

_METRICS = (
    ("steady epoch s", "steady_epoch_s", "{:.3f}"),
    ("first epoch s", "first_epoch_s", "{:.2f}"),
    ("images/s", "images_per_s", "{:.0f}"),
    ("GPU MiB (NVML)", "gpu_mem_peak_mib", "{:.0f}"),
    ("peak RSS MiB", "peak_rss_mib", "{:.0f}"),
    ("wall s", "wall_s", "{:.1f}"),
)


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def summary_table(rows: list[dict[str, Any]], axes: list[str], title: str) -> Table:
    """One line per trial: its axis values, status and the main measurements."""
    own = [(name, name, "{:.4g}") for name in own_metrics(rows)[:EXTRA_METRICS]]
    metrics = [m for m in (*_METRICS, *own) if any(r.get(m[1]) is not None for r in rows)]
    table = Table(title=plain(title), title_justify="left")
    for axis in axes:
        table.add_column(plain(axis))
    table.add_column("repeat", justify="right")
    table.add_column("status")
    for label, _, _ in metrics:
        table.add_column(plain(label), justify="right")
    for row in rows:
        status = row["status"]
        style = "green" if status == TrialStatus.OK else "red"
        table.add_row(
            *(plain(json.dumps(row.get(a)) if not isinstance(row.get(a), str) else row[a]) for a in axes),
            str(row.get("repeat", 0)),
            plain(status, style),
            *(
                plain(_cell(row.get(key), fmt))
                if status == TrialStatus.OK or key in ("wall_s", "peak_rss_mib")
                else plain(status)
                for _, key, fmt in metrics
            ),
        )
    return table


def print_summary(done: list[Row], axes: list[str], title: str, console: Console | None = None) -> None:
    """The end of a run: its trials' rows as a table, then each failure with its log."""
    console = console or make_console()
    rows = [row.record() for row in done]
    console.print(summary_table(rows, axes, title))
    for row in rows:
        row["_config"] = trial_config(row)
    for line in answer_lines(answers(rows, axes)):
        console.print(plain(line), highlight=False, soft_wrap=True)
    failures = [r for r in rows if r["status"] != TrialStatus.OK.value]
    for row in failures:
        console.print(_failure(row, row["trial_id"]))


def _failure(row: dict[str, Any], who: str) -> Text:
    """A failed attempt in two lines: status, trial, error and its message; the log (and the files it
    wrote into its own folder: a partial checkpoint, a dump)."""
    text = Text.assemble(
        plain(row["status"], "red"),
        plain(f" {who} attempt {row['attempt']} {row.get('error_type') or ''}: {failure_line(row)}"),
        "\n",
        plain(f"    log: {row.get('log_path')}"),
    )
    if row.get("trial_dir"):
        text.append_text(plain(f"\n    its files: {row['trial_dir']}", lines=True))
    return text


def status_report(attempts_table: pa.Table, console: Console | None = None) -> None:
    """Per sweep: trials by status (latest attempt), attempts, and failures with their logs."""
    console = console or make_console()
    latest_rows = latest_attempts(attempts_table).to_pylist()
    all_rows = attempts_table.select(["sweep"]).to_pylist()
    by_sweep: dict[str, list[dict]] = collections.defaultdict(list)
    earlier: dict[str, list[dict]] = {}
    for row in latest_rows:
        by_sweep[str(row["sweep"])].append(row)
    for sweep in by_sweep:
        by_sweep[sweep], earlier[sweep] = split_versions(by_sweep[sweep])
    attempts = collections.Counter(str(r["sweep"]) for r in all_rows)
    table = Table(title="sweeps", title_justify="left")
    table.add_column("sweep")
    table.add_column("trials", justify="right")
    for status in TrialStatus:
        table.add_column(status.value, justify="right")
    table.add_column("attempts", justify="right")
    for sweep, rows in sorted(by_sweep.items()):
        counts = collections.Counter(str(r["status"]) for r in rows)
        table.add_row(
            plain(sweep), str(len(rows)), *(str(counts.get(s.value, 0)) for s in TrialStatus), str(attempts[sweep])
        )
    console.print(table)
    for sweep, old in sorted(earlier.items()):
        if old:
            console.print(plain(earlier_text(sweep, old), "dim"), highlight=False, soft_wrap=True)
    for sweep, rows in sorted(by_sweep.items()):
        for row in rows:
            if row["status"] != TrialStatus.OK.value:
                console.print(_failure(row, f"{sweep} {row['trial_id']}"))
