"""The verdicts of `grid compare`: each config's (`Verdict`), the run's (`Comparison`), and the
same as JSON (`grid compare --json` writes it, `grid report --verdict` reads it back).

grid/reports/compare.py judges; this module holds what it found, in words and as data.
"""

from __future__ import annotations

import collections
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grid.errors import UsageError
from grid.reports.noise import Noise
from grid.reports.table import Spread, counts_text, fmt_number, show, split_keys
from grid.shared import TrialStatus

KINDS = ("regression", "noisy", "improvement", "unchanged", "missing", "new")
NOISY_EXIT = 6
_PLURAL = {"regression": "regressions", "improvement": "improvements"}


@dataclass(frozen=True)
class Side:
    """One config's repeats on one side: their outcomes and the metric's spread over the ok ones."""

    statuses: dict[str, int]
    stats: Spread | None

    @property
    def all_ok(self) -> bool:
        return set(self.statuses) == {TrialStatus.OK}

    @property
    def any_ok(self) -> bool:
        return TrialStatus.OK in self.statuses

    def text(self) -> str:
        value = "-" if self.stats is None else fmt_number(self.stats.median)
        if self.stats is not None and self.stats.n > 1:
            value += f" ({fmt_number(self.stats.low)}-{fmt_number(self.stats.high)})"
        return value if self.all_ok else f"{value} [{counts_text(collections.Counter(self.statuses))}]"


@dataclass(frozen=True)
class Verdict:
    config: dict[str, Any]
    kind: str  # one of KINDS
    reason: str
    baseline: Side | None  # the run medians of the history (their median, min and max)
    current: Side | None
    change_pct: float | None = None
    noise: Noise | None = None
    runs: list[list[float]] = field(default_factory=list)  # each baseline run's ok values, oldest first
    current_values: list[float] = field(default_factory=list)
    confirm_values: list[list[float]] = field(default_factory=list)  # each confirming re-run's
    confirmed: bool | None = None  # None: no re-run asked for
    moved_at: int | None = None  # the change point: index into runs (len(runs): the current run)


@dataclass
class Comparison:
    metric: str
    threshold_pct: float
    baseline: dict[str, str]  # uri, sweep
    current: dict[str, str]
    goal: str = "min"
    verdicts: list[Verdict] = field(default_factory=list)
    allow_missing: bool = False
    runs: list[str] = field(default_factory=list)  # the baseline runs' names, oldest first
    notes: list[str] = field(default_factory=list)

    @property
    def higher_is_better(self) -> bool:
        return self.goal == "max"

    @property
    def regressed(self) -> bool:
        return any(v.kind == "regression" for v in self.verdicts)

    @property
    def incomplete(self) -> bool:
        """Configs of the baseline that the current run lacks, and they were not allowed to."""
        return not self.allow_missing and any(v.kind == "missing" for v in self.verdicts)

    @property
    def verdict(self) -> str:
        if self.regressed:
            return "regression"
        if self.incomplete:
            return "incomplete"
        return "noisy" if any(v.kind == "noisy" for v in self.verdicts) else "ok"

    @property
    def exit_code(self) -> int:
        """0 ok, 1 regression, 3 incomplete, 6 noisy (2 is bad input, raised before a Comparison exists)."""
        return {"ok": 0, "regression": 1, "incomplete": 3, "noisy": NOISY_EXIT}[self.verdict]

    def flagged(self) -> list[Verdict]:
        """Regressions of the metric not yet confirmed: what `--confirm` re-runs."""
        return [v for v in self.verdicts if v.kind == "regression" and v.noise is not None and v.confirmed is None]

    def counts(self) -> dict[str, int]:
        found = collections.Counter(v.kind for v in self.verdicts)
        return {kind: found.get(kind, 0) for kind in KINDS}

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "threshold_pct": self.threshold_pct,
            "baseline": self.baseline,
            "current": self.current,
            "allow_missing": self.allow_missing,
            "baseline_runs": self.runs,
            "notes": self.notes,
            "counts": self.counts(),
            "configs": [{**asdict(v), "change_pct": _finite(v.change_pct)} for v in self.verdicts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        """The comparison `to_json` wrote (a KeyError or TypeError where it is not one)."""
        return cls(
            metric=data["metric"],
            threshold_pct=data["threshold_pct"],
            baseline=data["baseline"],
            current=data["current"],
            goal="max" if data["higher_is_better"] else "min",
            verdicts=[_verdict_of(v) for v in data["configs"]],
            allow_missing=data["allow_missing"],
            runs=data["baseline_runs"],
            notes=data["notes"],
        )


def _finite(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else str(value)  # JSON has no Infinity


def _side_of(data: dict[str, Any] | None) -> Side | None:
    if data is None:
        return None
    return Side(data["statuses"], None if data["stats"] is None else Spread(**data["stats"]))


def _verdict_of(data: dict[str, Any]) -> Verdict:
    change = data["change_pct"]
    return Verdict(
        **{
            **data,
            "change_pct": float(change) if isinstance(change, str) else change,
            "baseline": _side_of(data["baseline"]),
            "current": _side_of(data["current"]),
            "noise": None if data["noise"] is None else Noise(**data["noise"]),
        }
    )


def varying_keys(verdicts: list[Verdict]) -> list[str]:
    return sorted(split_keys([v.config for v in verdicts])[0])


def summary_line(result: Comparison) -> str:
    direction = "higher" if result.higher_is_better else "lower"
    counts = ", ".join(f"{n} {_PLURAL.get(kind, kind) if n != 1 else kind}" for kind, n in result.counts().items())
    verdict = {
        "regression": "REGRESSION",
        "incomplete": "INCOMPLETE: the current run lacks configs of the baseline (--allow-missing to accept that)",
        "noisy": "NOISY: the noise of some configs is wider than the threshold; nothing stood out from it",
        "ok": "no regression",
    }[result.verdict]
    runs = len(result.runs)
    return (
        f"{result.metric} ({direction} is better), threshold {result.threshold_pct:g}% and beyond the noise of "
        f"{runs} baseline run{'s' if runs != 1 else ''}: {counts} -> {verdict}"
    )


def moved_at_text(result: Comparison, v: Verdict) -> str:
    """The change point over the baseline runs and the current one: the run it moved at."""
    if v.moved_at is None:
        return "-"
    return "this run" if v.moved_at >= len(v.runs) else result.runs[-len(v.runs) :][v.moved_at]


NUMERIC_COLUMNS = ("baseline", "current", "change", "noise")


def verdict_columns(keys: list[str]) -> list[str]:
    """The verdict table's columns (the terminal's and the report page's), after `verdict`."""
    return [*keys, *NUMERIC_COLUMNS, "moved at", "why"]


def verdict_cells(result: Comparison, v: Verdict, keys: list[str]) -> list[str]:
    """One config's row of the verdict table, as text, in `verdict_columns` order."""
    return [
        *(show(v.config.get(k)) for k in keys),
        v.baseline.text() if v.baseline else "-",
        v.current.text() if v.current else "-",
        "-" if v.change_pct is None else f"{v.change_pct:+.1f}%",
        "-" if v.noise is None else f"±{v.noise.band_pct:.1f}%",
        moved_at_text(result, v),
        v.reason,
    ]


def write_json(result: Comparison, path: str, plots: list[str] | None = None) -> None:
    """The comparison as JSON, with the paths of the history plots drawn for it (`--out`)."""
    with open(path, "w") as f:
        json.dump({**result.to_json(), "plots": plots or []}, f, indent=2, default=str)
        f.write("\n")


@dataclass(frozen=True)
class VerdictFile:
    """A verdict file of `grid compare --json`, read: where it is, the comparison, the plots it names."""

    path: str
    result: Comparison
    plots: list[str]


def read_json(path: str) -> VerdictFile:
    """What `grid compare --json` wrote: the comparison, and the history plots it drew."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"--verdict: cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--verdict: {path} is not JSON ({exc})") from None
    try:
        return VerdictFile(path, Comparison.from_json(data), [str(p) for p in data.get("plots", [])])
    except (KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"--verdict: {path} is not a verdict written by grid compare --json (at {exc!r})") from None
