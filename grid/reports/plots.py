"""A sweep's trade-offs as PNG plots (matplotlib, Agg: no display needed).

A plot is drawn only when its x axis varies in the sweep and its metric was measured; otherwise
it is skipped with a note saying why, never drawn empty. Points are the median of the ok repeats
with a min-max bar; a point whose repeats all failed is named in the note instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from grid.reports.table import Group, counts_text, group_rows, show, sort_key, spread

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


def sweep_plots(rows: list[dict[str, Any]], axes: list[str], out_dir: Path, prefix: str) -> list[Plot]:
    return [draw(spec, rows, axes, out_dir / f"{prefix}-{spec.name}.png") for spec in PLOTS]


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
    return [(m, label) for m, label in spec.metrics if any(r["status"] == "ok" and r.get(m) is not None for r in rows)]


def draw(spec: PlotSpec, rows: list[dict[str, Any]], axes: list[str], path: Path) -> Plot:
    reason = skip_reason(spec, rows, axes)
    if reason:
        return Plot(spec.name, spec.title, None, reason)
    xs = sorted({r["_config"].get(spec.x) for r in rows}, key=sort_key)
    categorical = any(v is None or isinstance(v, str) for v in xs)
    where = {v: (i if categorical else v) for i, v in enumerate(xs)}
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    series_axes = [a for a in axes if a != spec.x]
    failed: list[str] = []
    for i, series in enumerate(group_rows(rows, series_axes)):
        label = " ".join(f"{a}={show(v)}" for a, v in zip(series_axes, series.key)) or "all"
        failed += _draw_series(ax, spec, series, label, f"C{i % 10}", where)
    _decorate(ax, spec, xs, where, categorical)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
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
