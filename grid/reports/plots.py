"""A sweep's trade-offs as PNG plots (matplotlib, Agg: no display needed).

A plot is drawn only when its x axis varies in the sweep and its metric was measured; otherwise
it is skipped with a note saying why, never drawn empty. Points are the median of the ok repeats
with a min-max bar; a point whose repeats all failed is named in the note instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grid.reports.answers import Answers, timed
from grid.reports.build import SweepReport
from grid.reports.figure import pyplot
from grid.reports.law import Law, law_axes
from grid.reports.table import Group, counts_text, fmt_number, group_rows, show, sort_key, spread
from grid.shared import TrialStatus

_IDEAL = "ideal: linear from the fewest GPUs (dotted)"


@dataclass(frozen=True)
class PlotSpec:
    name: str
    title: str
    x: str
    metrics: tuple[tuple[str, str], ...]  # (column, legend suffix)
    ylabel: str
    ideal: bool = False  # draw linear scaling from the smallest x
    log_y: bool = False  # values spanning decades (memory: 60 GiB preallocated next to 1 GiB)


PLOTS = (
    PlotSpec(
        "memory-vs-fraction",
        "peak GPU memory vs memory fraction",
        "memory_fraction",
        (("gpu_mem_peak_mib", "NVML"), ("framework_peak_mib", "framework")),
        "peak MiB",
        log_y=True,
    ),
    PlotSpec(
        "epoch-vs-fraction",
        "steady epoch time vs memory fraction",
        "memory_fraction",
        (("steady_epoch_s", ""),),
        "steady epoch s",
    ),
    PlotSpec("throughput-vs-batch", "throughput vs batch size", "batch_size", (("images_per_s", ""),), "images/s"),
    PlotSpec("throughput-vs-gpus", "throughput vs GPU count", "gpus", (("images_per_s", ""),), "images/s", ideal=True),
)


@dataclass(frozen=True)
class Plot:
    name: str
    title: str
    path: Path | None  # None: skipped
    note: str  # why it was skipped, or what it leaves out


def sweep_plots(report: SweepReport, out_dir: Path) -> list[Plot]:
    """The report's plots as PNGs under out_dir, named after its sweep."""
    rows, axes, laws, found = report.rows, report.axes, report.laws, report.answers
    # The store reads only rows whose sweep is a name of their folder; a name from data is still
    # made a plain file name here, so that no value can place a file outside out_dir.
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "_", report.sweep).lstrip(".") or "sweep"
    plots = []
    for spec in PLOTS:
        path = out_dir / f"{prefix}-{spec.name}.png"
        if spec.x == "memory_fraction" and not skip_reason(spec, rows, axes):
            plots.append(fraction_plot(spec, rows, axes, path, laws if spec.name == "memory-vs-fraction" else []))
        else:
            plots.append(draw(spec, rows, axes, path))
    plots.append(pareto_plot(found, out_dir / f"{prefix}-pareto.png"))
    return plots


def fraction_plot(spec: PlotSpec, rows: list[dict[str, Any]], axes: list[str], path: Path, laws: list[Law]) -> Plot:
    """A metric against the memory fraction on a numeric (log) axis: each combination's points, its
    uncapped run as a dashed level apart from the axis, the fractions that failed shaded, and the
    fitted memory law dotted."""
    series_axes = law_axes(axes)
    source = rows if spec.name == "memory-vs-fraction" else timed(rows)
    fig, ax = pyplot().subplots(figsize=(6.8, 4.2), dpi=100)
    capped = [r["_config"]["memory_fraction"] for r in source if r["_config"].get("memory_fraction") is not None]
    notes: list[str] = []
    unplotted: list[str] = []  # configs whose every run failed
    if not capped:
        pyplot().close(fig)
        return Plot(spec.name, spec.title, None, "no trial ran with a memory_fraction cap")
    lo, hi = min(capped), max(capped)
    for i, series in enumerate(group_rows(source, series_axes)):
        color = f"C{i % 10}"
        label = " ".join(f"{a}={show(v)}" for a, v in zip(series_axes, series.key)) or "all"
        by_x = group_rows(series.rows, ["memory_fraction"])
        for (metric, suffix), style in zip(spec.metrics[:1], ("-o",)):  # NVML only: the framework's is in the tables
            points = [(g.key[0], spread(g.values(metric))) for g in by_x if g.key[0] is not None]
            points = [(x, st) for x, st in points if st is not None]
            if points:
                xs, stats = zip(*points)
                ax.errorbar(
                    xs,
                    [st.median for st in stats],
                    yerr=[[st.median - st.low for st in stats], [st.high - st.median for st in stats]],
                    fmt=style,
                    color=color,
                    capsize=3,
                    markersize=4,
                    label=f"{label} {suffix}".strip(),
                )
            uncapped = next((spread(g.values(metric)) for g in by_x if g.key[0] is None), None)
            if uncapped is not None:
                ax.axhline(uncapped.median, color=color, linestyle=(0, (6, 3)), alpha=0.8, linewidth=1.2)
                ax.annotate(
                    f"no cap {fmt_number(uncapped.median)}",
                    (1.0, uncapped.median),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="bottom",
                    fontsize="x-small",
                    color=color,
                )
        unplotted += [
            f"{label} memory_fraction={show(g.key[0])}: {counts_text(g.failures())}" for g in by_x if not g.ok()
        ]
        failed = [g.key[0] for g in by_x if g.key[0] is not None and g.failures()]
        working = [g.key[0] for g in by_x if g.key[0] is not None and g.ok() and not g.failures()]
        below = [f for f in failed if not working or f < min(working)]
        if below:
            edge = max(below)
            ax.axvspan(lo / 1.5, edge, color=color, alpha=0.06, linewidth=0)
            notes.append(f"{label}: {show(edge)} and below failed (shaded)")
        law = next((law for law in laws if law.key == dict(zip(series_axes, series.key))), None)
        if law is not None:
            grid_x = [lo * (hi / lo) ** (k / 40) for k in range(41)] if hi > lo else [lo]
            ax.plot(grid_x, [law.predict(x) for x in grid_x], ":", color=color, linewidth=1.5, alpha=0.9)
            notes.append(f"{label}: {fmt_number(law.slope_mib)} x f + {fmt_number(law.intercept_mib)} MiB (dotted)")
    ax.set_xscale("log")
    ax.set_xlim(lo / 1.5, hi * 1.5)
    ax.set_title(spec.title)
    ax.set_xlabel("memory_fraction (log); dashed: no cap, shaded: failed, dotted: fitted law")
    ax.set_ylabel(spec.ylabel)
    if spec.log_y:
        y0, y1 = ax.dataLim.y0, ax.dataLim.y1
        if y0 > 0 and y1 / y0 >= 20:
            ax.set_yscale("log")
    ax.grid(True, alpha=0.3, which="both")
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize="x-small" if len(handles) > 6 else "small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, bbox_inches="tight")
    pyplot().close(fig)
    if unplotted:
        notes.append("not plotted: " + "; ".join(unplotted))
    return Plot(spec.name, spec.title, path, "; ".join(notes))


def pareto_plot(found: Answers, path: Path) -> Plot:
    """Every timed config as a point of peak GPU memory and images/s; the Pareto front joined."""
    title = "Pareto front: peak GPU memory vs images/s"
    points = [p for p in found.points if p.memory_mib is not None and p.images_per_s is not None]
    memory = [p.memory_mib or 0.0 for p in points]
    speed = [p.images_per_s or 0.0 for p in points]
    if len(points) < 2:
        return Plot("pareto", title, None, "needs two or more timed configs with GPU memory and images/s measured")
    fig, ax = pyplot().subplots(figsize=(6.8, 4.2), dpi=100)
    ax.scatter(memory, speed, color="0.6", s=18, label="configs")
    front = found.front
    ax.plot(
        [p.memory_mib or 0.0 for p in front],
        [p.images_per_s or 0.0 for p in front],
        "-o",
        color="C3",
        label="Pareto front",
    )
    for p in front:
        where = (p.memory_mib, p.images_per_s)
        ax.annotate(p.label, where, fontsize="xx-small", xytext=(4, 4), textcoords="offset points")
    if min(memory) > 0 and max(memory) / min(memory) >= 20:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel("peak GPU memory, MiB (NVML)")
    ax.set_ylabel("images/s")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, bbox_inches="tight")
    pyplot().close(fig)
    return Plot("pareto", title, path, f"{len(front)} of {len(points)} configs on the front")


def skip_reason(spec: PlotSpec, rows: list[dict[str, Any]], axes: list[str]) -> str | None:
    if spec.x not in axes:
        values = sorted({show(r["_config"][spec.x]) for r in rows if spec.x in r["_config"]})
        return (
            f"{spec.x} does not vary in this sweep (only {', '.join(values)})"
            if values
            else f"the trials have no {spec.x} parameter"
        )
    if not _measured(spec, rows):
        gpu_metric = any(m.startswith(("gpu_", "framework_")) for m, _ in spec.metrics)
        cpu_only = gpu_metric and not any(r.get("gpu_name") for r in rows)
        return f"no ok trial measured {' or '.join(m for m, _ in spec.metrics)}" + (
            " (no GPU: memory is measured on GPUs only)" if cpu_only else ""
        )
    return None


def _measured(spec: PlotSpec, rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (m, label)
        for m, label in spec.metrics
        if any(r["status"] == TrialStatus.OK and r.get(m) is not None for r in rows)
    ]


def draw(spec: PlotSpec, rows: list[dict[str, Any]], axes: list[str], path: Path) -> Plot:
    reason = skip_reason(spec, rows, axes)
    if reason:
        return Plot(spec.name, spec.title, None, reason)
    xs = sorted({r["_config"].get(spec.x) for r in rows}, key=sort_key)
    categorical = any(v is None or isinstance(v, str) for v in xs)
    where = {v: (i if categorical else v) for i, v in enumerate(xs)}
    fig, ax = pyplot().subplots(figsize=(6.4, 4.0), dpi=100)
    series_axes = [a for a in axes if a != spec.x]
    failed: list[str] = []
    for i, series in enumerate(group_rows(rows, series_axes)):
        label = " ".join(f"{a}={show(v)}" for a, v in zip(series_axes, series.key)) or "all"
        failed += _draw_series(ax, spec, series, label, f"C{i % 10}", where)
    _decorate(ax, spec, xs, where, categorical)
    fig.savefig(path, bbox_inches="tight")
    pyplot().close(fig)
    return Plot(spec.name, spec.title, path, ("not plotted: " + "; ".join(failed)) if failed else "")


def _draw_series(ax: Any, spec: PlotSpec, series: Group, label: str, color: str, where: dict) -> list[str]:
    failed = []
    by_x = group_rows(series.rows, [spec.x])
    for (metric, suffix), style in zip(spec.metrics, ("-o", "--s")):  # one style per metric, in every series
        points = [(where[g.key[0]], spread(g.values(metric))) for g in by_x]
        points = [(x, s) for x, s in points if s is not None]
        if not points:
            continue
        x, stats = zip(*points)
        medians = [s.median for s in stats]
        ax.errorbar(
            x,
            medians,
            yerr=[[s.median - s.low for s in stats], [s.high - s.median for s in stats]],
            fmt=style,
            color=color,
            capsize=3,
            label=f"{label} {suffix}".strip(),
        )
        if spec.ideal:
            x0, y0 = x[0], medians[0]
            first = not any(line.get_label() == _IDEAL for line in ax.get_lines())
            ax.plot(x, [y0 * xi / x0 for xi in x], ":", color=color, alpha=0.7, label=_IDEAL if first else "_")
    for g in by_x:
        if not g.ok():
            failed.append(f"{label} {spec.x}={show(g.key[0])}: {counts_text(g.failures())}")
    return failed


def _decorate(ax: Any, spec: PlotSpec, xs: list, where: dict, categorical: bool) -> None:
    ax.set_title(spec.title)
    ax.set_xlabel(spec.x + (" (null: no cap)" if None in xs and spec.x == "memory_fraction" else ""))
    ax.set_ylabel(spec.ylabel)
    ax.set_xticks([where[v] for v in xs], [show(v) for v in xs])
    if not categorical and min(xs) > 0 and max(xs) / min(xs) >= 8 and spec.x == "batch_size":
        ax.set_xscale("log", base=2)
        ax.set_xticks([where[v] for v in xs], [show(v) for v in xs])
        ax.minorticks_off()
    lo, hi = ax.dataLim.y0, ax.dataLim.y1
    if spec.log_y and lo > 0 and hi / lo >= 20:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:  # outside the axes: a legend of many series must not hide the lines
        ax.legend(fontsize="x-small" if len(handles) > 6 else "small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
