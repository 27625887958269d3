"""The memory law: how the GPU memory a trial takes follows its memory fraction.

Per combination of the other axes (backend and batch size, typically), a least-squares line
through the ok trials' NVML peak against their capped fraction: MiB = slope x fraction +
intercept. The intercept is what no cap covers (CUDA context, the framework's runtime); slope /
card memory says how the cap is taken: ~1 when the framework reserves the fraction up front (jax
preallocation, TensorFlow's memory limit with growth off), ~0 when the cap is only a ceiling and
the trial takes what it needs (torch, TensorFlow with memory growth).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from grid.reports.table import Cell, TableView, fmt_number, group_rows, show
from grid.shared import TrialStatus

MIN_POINTS = 3  # distinct fractions a line needs


@dataclass(frozen=True)
class Law:
    label: str
    key: dict[str, Any]  # the combination's axis values
    slope_mib: float  # MiB per unit of fraction
    intercept_mib: float
    r2: float
    card_mib: float | None
    points: int
    low: float
    high: float

    @property
    def slope_per_card(self) -> float | None:
        return self.slope_mib / self.card_mib if self.card_mib else None

    def predict(self, fraction: float) -> float:
        return self.slope_mib * fraction + self.intercept_mib

    def as_json(self) -> dict[str, Any]:
        return {
            "combination": self.key,
            "slope_mib": self.slope_mib,
            "intercept_mib": self.intercept_mib,
            "r2": self.r2,
            "card_mib": self.card_mib,
            "slope_per_card": self.slope_per_card,
            "points": self.points,
            "fractions": [self.low, self.high],
        }


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares: (slope, intercept, R^2); R^2 is 1.0 when every y is the same and on the line."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    total = sum((y - my) ** 2 for y in ys)
    residual = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys))
    return slope, intercept, 1.0 - residual / total if total > 0 else 1.0


def law_axes(axes: list[str]) -> list[str]:
    """What a law is fitted per: the varying axes but the fraction and the run's length."""
    return [a for a in axes if a not in ("memory_fraction", "epochs", "gpu_shared")]


def fit_laws(rows: list[dict[str, Any]], axes: list[str]) -> list[Law]:
    """A law per combination that has ok rows at MIN_POINTS or more distinct capped fractions."""
    keys = law_axes(axes)
    laws = []
    for group in group_rows(rows, keys):
        points = [
            (r["_config"]["memory_fraction"], r["gpu_mem_peak_mib"])
            for r in group.rows
            if r["status"] == TrialStatus.OK
            and r["_config"].get("memory_fraction") is not None
            and r.get("gpu_mem_peak_mib") is not None
        ]
        if len({x for x, _ in points}) < MIN_POINTS:
            continue
        xs, ys = [float(x) for x, _ in points], [float(y) for _, y in points]
        slope, intercept, r2 = fit_line(xs, ys)
        cards = [r["gpu_total_mib"] for r in group.rows if r.get("gpu_total_mib")]
        key = dict(zip(keys, group.key))
        label = " ".join(f"{a}={show(v)}" for a, v in key.items()) or "all"
        laws.append(Law(label, key, slope, intercept, r2, max(cards) if cards else None, len(xs), min(xs), max(xs)))
    return laws


def law_table(laws: list[Law], title: str) -> TableView | None:
    if not laws:
        return None
    body = [
        [
            Cell(law.label, "label"),
            Cell(fmt_number(law.slope_mib)),
            Cell(fmt_number(law.intercept_mib)),
            Cell(f"{law.r2:.4f}"),
            Cell(f"{law.slope_per_card:.4f}" if law.slope_per_card is not None else "-"),
            Cell(f"{law.points} ({show(law.low)}..{show(law.high)})"),
        ]
        for law in laws
    ]
    view = TableView(
        f"{title}: the memory law, NVML MiB = slope x memory_fraction + intercept",
        ["combination", "slope MiB", "intercept MiB", "R^2", "slope / card", "ok points (fractions)"],
        body,
        1,
        kind="law",
    )
    view.notes.append(
        "intercept: what no cap covers (CUDA context, runtime); slope / card ~1: the fraction is reserved up front, "
        "~0: the cap is only a ceiling"
    )
    return view
