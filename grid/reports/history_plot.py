"""A comparison's history as a PNG per metric: for each config, every baseline run (its repeats and
their median), the noise band around the baseline's center, the current run (red when it regressed,
magenta when noisy), any confirming re-runs, and a dashed line at the run where it moved (the change
point). Written only inside the folder given, under a name made from the metric's name."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from grid.reports.figure import pyplot
from grid.reports.table import show
from grid.reports.verdicts import Comparison, Verdict, varying_keys

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MAX_CONFIGS = 12
_COLOR = {"regression": "tab:red", "noisy": "tab:purple", "improvement": "tab:green"}


def plot_name(metric: str) -> str:
    """`history-<metric>.png`, the metric's name reduced to letters, digits, `_`, `-` and `.`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("._") or "metric"
    return f"history-{safe[:80]}.png"


def run_labels(names: list[str]) -> list[str]:
    """`MM-DD HH:MM` of each run's UTC time; their order (#1, #2, ...) where those would repeat."""
    labels = [f"{n[4:6]}-{n[6:8]} {n[9:11]}:{n[11:13]}" if len(n) >= 13 and n[8:9] == "T" else n[:15] for n in names]
    return labels if len(set(labels)) == len(labels) else [f"#{i}" for i in range(1, len(names) + 1)]


def _label(v: Verdict, keys: list[str]) -> str:
    return " ".join(f"{k}={show(v.config.get(k))}" for k in keys) or "all"


def _panel(ax: Axes, v: Verdict, names: list[str], keys: list[str]) -> None:
    n = len(v.runs)
    for i, values in enumerate(v.runs):
        ax.scatter([i] * len(values), values, s=8, color="0.6", zorder=2)
        if values:
            ax.scatter([i], [statistics.median(values)], s=26, color="black", zorder=3)
    if v.noise is not None:
        c, half = v.noise.center, abs(v.noise.center) * v.noise.band_pct / 100
        ax.axhspan(c - half, c + half, color="tab:blue", alpha=0.12, zorder=1, label=f"band ±{v.noise.band_pct:.1f}%")
        ax.axhline(c, color="tab:blue", lw=0.8, zorder=1)
    color = _COLOR.get(v.kind, "tab:blue")
    if v.current_values:
        ax.scatter([n] * len(v.current_values), v.current_values, s=10, color=color, alpha=0.5, zorder=2)
        ax.scatter([n], [statistics.median(v.current_values)], s=40, color=color, zorder=4, label=f"this run: {v.kind}")
    for k, values in enumerate(v.confirm_values, start=1):
        if values:
            ax.scatter([n + k] * len(values), values, s=10, marker="x", color=color, zorder=2)
    if v.moved_at is not None:
        ax.axvline(v.moved_at - 0.5, color="tab:red", ls="--", lw=1, label="moved here")
    ticks = [*run_labels(names[-n:]), "this run", *(f"re-run {k}" for k in range(1, len(v.confirm_values) + 1))]
    ax.set_xticks(range(len(ticks)), ticks, rotation=60, fontsize=6, ha="right")
    ax.set_title(f"{_label(v, keys)}: {v.kind}", fontsize=8)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="best")


def write_history_plots(result: Comparison, out: str) -> list[str]:
    """The history plot of the compared metric under `out`; the paths written."""
    judged = [v for v in result.verdicts if v.runs or v.current_values][:MAX_CONFIGS]
    if not judged:
        return []
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    cols = min(3, len(judged))
    rows = (len(judged) + cols - 1) // cols
    fig, axes = pyplot().subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    keys = varying_keys(result.verdicts)
    for ax, v in zip(axes.flat, judged):
        _panel(ax, v, result.runs, keys)
        ax.set_ylabel(result.metric, fontsize=7)
    for ax in list(axes.flat)[len(judged) :]:
        ax.set_visible(False)
    fig.suptitle(f"{result.metric}: {len(result.runs)} baseline run(s), this run, re-runs", fontsize=9)
    fig.tight_layout()
    path = folder / plot_name(result.metric)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return [str(path)]
