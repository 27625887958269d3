"""Reports in a terminal: each sweep's tables (rich), its plots' paths and its failures."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from grid.reports.build import SweepReport
from grid.reports.repeats import repeats_text
from grid.reports.table import TableView, counts_text, failure_line, show
from grid.text import plain

MAX_TERMINAL_ROWS = 200
_STYLE = {"value": "", "label": "bold", "none": "dim", "fail": "red", "status-ok": "green", "status-fail": "red"}


def rich_table(view: TableView, max_rows: int = MAX_TERMINAL_ROWS) -> Table:
    notes = view.notes + (
        [f"first {max_rows} of {len(view.rows)} rows; all in the HTML report"] if len(view.rows) > max_rows else []
    )
    table = Table(
        title=plain(view.title),
        title_justify="left",
        caption=plain("; ".join(notes)) if notes else None,
        caption_justify="left",
    )
    for i, header in enumerate(view.headers):
        table.add_column(plain(header), justify="left" if i < view.labels else "right")
    for row in view.rows[:max_rows]:
        table.add_row(*(plain(c.text, _STYLE[c.kind]) for c in row))
    return table


def print_report(reports: list[SweepReport], console: Console) -> None:
    for report in reports:
        fixed = ", ".join(f"{k}={show(v)}" for k, v in report.fixed.items())
        console.print(
            Text.assemble(
                plain(f"sweep {report.sweep}", "bold"),
                plain(
                    f" ({report.workload}): {len(report.rows)} trials, "
                    f"{counts_text(report.status_counts())}; fixed: {fixed or '-'}"
                ),
            ),
            highlight=False,
        )
        how = repeats_text(report.rows)
        if how:
            console.print(how, highlight=False, markup=False, soft_wrap=True)
        for view in report.tables:
            console.print(rich_table(view))
        for plot in report.plots:
            console.print(
                plain(f"  plot {plot.title}: {plot.path or 'skipped: ' + plot.note}"), highlight=False, soft_wrap=True
            )
        failures = report.failures()
        for failure in failures[:MAX_TERMINAL_ROWS]:
            first = failure.rows[0]
            more = f" (+{len(failure.rows) - 1} more)" if len(failure.rows) > 1 else ""
            console.print(
                Text.assemble(
                    plain(failure.label, "red"),
                    plain(f" {failure.config} {failure.error_type}: {failure_line(first)}"),
                    "\n",
                    plain(f"    log: {first.get('log_path')}{more}"),
                ),
                highlight=False,
                soft_wrap=True,
            )
        if len(failures) > MAX_TERMINAL_ROWS:
            console.print(plain(f"... {len(failures) - MAX_TERMINAL_ROWS} more failed configs in the HTML report"))
