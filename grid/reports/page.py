"""The report as one self-contained HTML page: inline CSS, plots as base64 data URIs, no script,
and no request leaves the page (its Content-Security-Policy forbids any), so it can be mailed or
archived as is.
"""

from __future__ import annotations

import collections
import datetime
import json
from pathlib import Path
from typing import Any

from grid.reports import plots
from grid.reports.build import SweepReport
from grid.reports.html_text import data_uri, e, table
from grid.reports.table import counts_text, failure_line, show
from grid.reports.verdict_page import verdict_section
from grid.reports.verdicts import VerdictFile

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'"
_LOG_LINES = 40

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1300px; color: #1d1d1f; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; }
.muted { color: #666; } table { border-collapse: collapse; margin: 12px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 4px 10px; } th { background: #f4f4f6; text-align: left; }
td.value, td.none, td.fail { text-align: right; } td.label { font-weight: 600; }
td.fail, td.status-fail { color: #b00020; background: #fff3f3; }
td.none { color: #999; } td.status-ok { color: #137333; }
caption { caption-side: bottom; text-align: left; color: #666; font-size: 12px; padding-top: 4px; }
dl.env { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; } dl.env dt { font-weight: 600; }
dl.env dd { margin: 0; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; } figure img { width: 100%; border: 1px solid #eee; } figcaption { font-size: 12px; color: #666; }
pre { background: #f7f7f9; padding: 8px; overflow-x: auto; font-size: 12px; max-height: 360px; }
details { margin: 8px 0; } summary { cursor: pointer; } b.fail { color: #b00020; }
.verdict-regression, .verdict-incomplete { color: #b00020; font-weight: 600; } .verdict-noisy { color: #a0009a; }
.verdict-ok, .verdict-improvement { color: #137333; } .verdict-missing { color: #8a6d00; }
"""


def environment(rows: list[dict[str, Any]]) -> dict[str, str]:
    """What a reader needs to trust the numbers: hardware, driver, packages, hosts, when."""

    def distinct(key: str) -> str:
        return ", ".join(sorted({str(r[key]) for r in rows if r.get(key) is not None})) or "-"

    packages: dict[str, set] = collections.defaultdict(set)
    for row in rows:
        for name, version in json.loads(row.get("versions_json") or "{}").items():
            if version is not None:
                packages[name].add(str(version))
    frameworks = sorted(
        {f"{r['framework']} {r.get('framework_version') or ''}".strip() for r in rows if r.get("framework")}
    )
    started = [r["started_at"] for r in rows if r.get("started_at") is not None]
    ended = [r["ended_at"] for r in rows if r.get("ended_at") is not None]
    return {
        "GPU": distinct("gpu_name") if any(r.get("gpu_name") for r in rows) else "none (CPU slots)",
        "GPU memory MiB": distinct("gpu_total_mib"),
        "driver": distinct("driver_version"),
        "CUDA": distinct("cuda_version"),
        "frameworks": ", ".join(frameworks) or "-",
        "packages": ", ".join(f"{n} {'/'.join(sorted(v))}" for n, v in sorted(packages.items())) or "-",
        "hosts": distinct("host"),
        "gpu-grid": distinct("grid_version"),
        "schema versions": distinct("schema_version"),
        "ran": f"{min(started):%Y-%m-%d %H:%M} to {max(ended):%Y-%m-%d %H:%M} UTC" if started and ended else "-",
    }


def render(reports: list[SweepReport], source: str, verdict: str = "") -> str:
    """The page; `verdict`: the night's verdict section (grid/reports/verdict_page.py) above the sweeps."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = "\n".join([verdict, *(_sweep(r) for r in reports)]).lstrip("\n")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>gpu-grid report: {e(', '.join(r.sweep for r in reports))}</title><style>{_CSS}</style>"
        "</head>\n"
        f'<body data-ok="pending"><h1>gpu-grid report</h1>'
        f'<p class="muted">results: {e(source)} &middot; generated {now} &middot; latest attempt of each trial; '
        f"cells are the median of the ok repeats with their min-max range</p>\n{sections}\n</body></html>\n"
    )


def _sweep(report: SweepReport) -> str:
    fixed = ", ".join(f"{k}={show(v)}" for k, v in report.fixed.items()) or "-"
    env = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in environment(report.rows).items())
    return (
        f'<section id="sweep-{e(report.sweep)}"><h2>sweep {e(report.sweep)}</h2>'
        f"<p>workload <b>{e(report.workload)}</b>: {len(report.rows)} trials, "
        f"{e(counts_text(report.status_counts()))}; varying: {e(', '.join(report.axes) or '-')}; "
        f"fixed: {e(fixed)}</p>"
        f'<h3>environment</h3><dl class="env">{env}</dl>'
        + "".join(table(v) for v in report.tables)
        + _plots(report)
        + _failures(report)
        + "</section>"
    )


def _plots(report: SweepReport) -> str:
    drawn = [p for p in report.plots if p.path]
    skipped = [p for p in report.plots if not p.path]
    figures = "".join(
        f'<figure><img alt="{e(p.title)}" src="{data_uri(p.path)}"><figcaption>{e(p.note)}</figcaption></figure>'
        for p in drawn
    )
    notes = "".join(f"<li>{e(p.title)}: skipped, {e(p.note)}</li>" for p in skipped)
    return f'<h3>plots</h3><div class="plots">{figures or "<p>no plot applies to this sweep</p>"}</div>' + (
        f'<ul class="muted">{notes}</ul>' if notes else ""
    )


def _failures(report: SweepReport) -> str:
    failures = report.failures()
    if not failures:
        return "<h3>failures</h3><p>none: every trial's latest attempt ended ok</p>"
    items = []
    for failure in failures:
        first = failure.rows[0]
        tail = "\n".join((first.get("error_tail") or "").rstrip().splitlines()[-_LOG_LINES:])
        logs = "".join(
            f"<li>{e(r.get('log_path') or '-')} (trial {e(r['trial_id'])}, attempt {e(r['attempt'])})</li>"
            for r in failure.rows
        )
        items.append(
            f'<details><summary><b class="fail">{e(failure.label)}</b> {e(failure.config)} '
            f"<code>{e(failure.error_type)}</code>: {e(failure_line(first))}</summary>"
            f'<ul class="muted">{logs}</ul><pre>{e(tail or "(no output)")}</pre></details>'
        )
    return f"<h3>failures ({sum(len(f.rows) for f in failures)} trials)</h3>" + "".join(items)


def write_report(reports: list[SweepReport], out: str, source: str, verdict: VerdictFile | None = None) -> Path:
    """PNGs, index.html and report.json (the findings as data) under `out`; returns the page's path.
    `verdict`: a verdict file of `grid compare --json`, read (verdicts.read_json), shown on top."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for report in reports:
        report.plots = plots.sweep_plots(report, out_dir)
    page = out_dir / "index.html"
    page.write_text(render(reports, source, verdict_section(verdict) if verdict else ""))
    findings = {
        "results": source,
        "verdict": verdict.path if verdict else None,
        "sweeps": [r.as_json() for r in reports],
    }
    (out_dir / "report.json").write_text(json.dumps(findings, indent=2, default=str) + "\n")
    return page
