"""The night's verdict at the top of the report page (`grid report --verdict FILE`): what `grid
compare --json` decided, each config's verdict with the run where its history moved (the change
point), and the history plots it drew, embedded like the report's own.

A plot is embedded only if it is a PNG file: the verdict file names the paths, and the page never
carries any other file's bytes."""

from __future__ import annotations

from pathlib import Path

from grid.reports.html_text import data_uri, e, table
from grid.reports.table import Cell, TableView
from grid.reports.verdicts import Comparison, VerdictFile, summary_line, varying_keys, verdict_cells, verdict_columns

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def embeddable(path: str, verdict_file: str) -> Path | None:
    """The plot's file (as written, else beside the verdict file), if it is a PNG."""
    for candidate in (Path(path), Path(verdict_file).parent / Path(path).name):
        try:
            with candidate.open("rb") as f:
                if candidate.suffix == ".png" and f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE:
                    return candidate
        except OSError:
            continue
    return None


def verdict_section(verdict: VerdictFile) -> str:
    """The section's HTML, from the verdict file `read_json` read."""
    result, verdict_file = verdict.result, verdict.path
    plots = [p for p in (embeddable(path, verdict_file) for path in verdict.plots) if p is not None]
    missing = len(verdict.plots) - len(plots)
    figures = "".join(
        f'<figure><img alt="history of {e(result.metric)}" src="{data_uri(p)}">'
        f"<figcaption>{e(p.name)}: each config's runs (points), their median, the baseline band, this "
        "run, any re-runs, and a dashed line where it moved</figcaption></figure>"
        for p in plots
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    if missing:
        notes += f"<li>{missing} history plot(s) named in the verdict file are not PNG files here: not shown</li>"
    return (
        f'<section id="verdict"><h2>verdict: <span class="verdict-{e(result.verdict)}">{e(result.verdict)}</span></h2>'
        f"<p>{e(summary_line(result))}</p>"
        f'<p class="muted">baseline {e(result.baseline.get("uri", "-"))} '
        f"(sweep {e(result.baseline.get('sweep', '-'))}, runs {e(', '.join(result.runs) or '-')}); "
        f"this run {e(result.current.get('uri', '-'))}; "
        f"from {e(verdict_file)}</p>"
        + _table(result)
        + (f'<ul class="muted">{notes}</ul>' if notes else "")
        + (f'<div class="plots">{figures}</div>' if figures else "")
        + "</section>"
    )


def _table(result: Comparison) -> str:
    keys = varying_keys(result.verdicts)
    rows = [
        [Cell(v.kind, f"verdict-{v.kind}"), *(Cell(c, "") for c in verdict_cells(result, v, keys))]
        for v in result.verdicts
    ]
    return table(TableView(f"{result.metric}, config by config", ["verdict", *verdict_columns(keys)], rows, 1))
