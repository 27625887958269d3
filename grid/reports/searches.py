"""Each search's answer, read from its rows alone (a report needs no spec): the last value that
worked and the first that failed, the probes it took, its confirmations, and what the boundary
costs against the uncapped run (memory saved, steady-epoch slowdown).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from grid.reports.table import SHARED_KEY, Cell, TableView, fmt_number, median_ok, show, trial_config
from grid.shared import TrialStatus


@dataclass
class SearchResult:
    search_id: str
    axis: str
    label: str  # the combination of the other axes
    last_ok: float | None = None
    first_fail: float | None = None
    first_fail_status: str | None = None
    confirmed: bool = False
    probes: int = 0
    confirms: collections.Counter = field(default_factory=collections.Counter)
    verdict: str = ""
    boundary_mib: float | None = None  # NVML peak of the confirmations
    reference_mib: float | None = None  # NVML peak without a cap
    boundary_epoch_s: float | None = None
    reference_epoch_s: float | None = None
    boundary_images_per_s: float | None = None
    predicted: float | None = None  # the boundary the memory model last predicted (null: bisection only)

    @property
    def smallest(self) -> bool:
        return self.axis == "memory_fraction"

    @property
    def slowdown(self) -> float | None:
        """Steady epoch at the boundary / without a cap (1.0: no slower)."""
        if self.boundary_epoch_s and self.reference_epoch_s:
            return self.boundary_epoch_s / self.reference_epoch_s
        return None

    def as_json(self) -> dict[str, Any]:
        return {
            "search_id": self.search_id,
            "axis": self.axis,
            "combination": self.label,
            "last_ok": self.last_ok,
            "first_fail": self.first_fail,
            "first_fail_status": self.first_fail_status,
            "confirmed": self.confirmed,
            "probes": self.probes,
            "confirmations": dict(self.confirms),
            "verdict": self.verdict,
            "boundary_gpu_mib": self.boundary_mib,
            "uncapped_gpu_mib": self.reference_mib,
            "boundary_steady_epoch_s": self.boundary_epoch_s,
            "uncapped_steady_epoch_s": self.reference_epoch_s,
            "slowdown": self.slowdown,
            "boundary_images_per_s": self.boundary_images_per_s,
            "predicted": self.predicted,
        }


def conclude(rows: list[dict[str, Any]], label: str) -> SearchResult:
    """One search's answer from the latest attempt of each of its trials."""
    axis = rows[0]["search_axis"]
    result = SearchResult(rows[0]["search_id"], axis, label)
    smallest = result.smallest
    beyond = (lambda v, edge: v < edge) if smallest else (lambda v, edge: v > edge)  # toward failing
    done = [r for r in rows if r["status"] != TrialStatus.LOST]
    probes = [r for r in done if r["search_role"] == "probe"]
    confirms = [r for r in done if r["search_role"] == "confirm"]
    references = [r for r in done if r["search_role"] == "reference"]
    result.probes = len(probes)
    failing: dict[Any, str] = {}
    for row in probes + confirms:
        if row["status"] != TrialStatus.OK:
            failing.setdefault(row["_config"][axis], row["status"])
    by_value: dict[Any, list[dict]] = collections.defaultdict(list)
    for row in confirms:
        by_value[row["_config"][axis]].append(row)
    confirmed = [v for v, rs in by_value.items() if v not in failing]
    passing = [
        r["_config"][axis] for r in probes if r["status"] == TrialStatus.OK and r["_config"][axis] not in failing
    ]
    pick = min if smallest else max
    if confirmed:
        result.last_ok, result.confirmed = pick(confirmed), True
    elif passing:
        result.last_ok = pick(passing)
    ends = _ends(probes, smallest)
    predictions = [r for r in probes if r.get("search_predicted") is not None]
    if predictions:
        result.predicted = max(predictions, key=lambda r: r["search_step"])["search_predicted"]
    if result.last_ok is not None:
        below = [v for v in failing if beyond(v, result.last_ok)]
        if below:
            result.first_fail = max(below) if smallest else min(below)
            result.first_fail_status = failing[result.first_fail]
        at = by_value.get(result.last_ok, [])
        result.confirms = collections.Counter(r["status"] for r in at)
        result.boundary_mib = median_ok(at, "gpu_mem_peak_mib")
        result.boundary_epoch_s = median_ok(at, "steady_epoch_s")
        result.boundary_images_per_s = median_ok(at, "images_per_s")
    result.reference_mib = median_ok(references, "gpu_mem_peak_mib")
    result.reference_epoch_s = median_ok(references, "steady_epoch_s")
    result.verdict = _verdict(result, ends)
    return result


def _ends(probes: list[dict[str, Any]], smallest: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The probes at the range's working end and at its far end, if it took them (rows of gpu-grid
    before the range was recorded: its first two steps, both ends)."""
    axis = probes[0]["search_axis"] if probes else None
    if probes and probes[0].get("search_low") is not None:
        good_value, bad_value = ("search_high", "search_low") if smallest else ("search_low", "search_high")
        at = {r["_config"][axis]: r for r in probes}
        return at.get(probes[0][good_value]), at.get(probes[0][bad_value])
    steps = {r["search_step"]: r for r in probes if r["search_step"] in (1, 2)}
    return steps.get(1), steps.get(2)


def _verdict(result: SearchResult, ends: tuple[dict[str, Any] | None, dict[str, Any] | None]) -> str:
    axis = result.axis
    good, bad = ends
    if good is not None and good["status"] != TrialStatus.OK:
        return f"fails even at {axis}={show(good['_config'][axis])} ({good['status']}): nothing in the range works"
    if result.last_ok is None:
        return "in progress: no step has finished yet"
    if bad is not None and bad["status"] == TrialStatus.OK and result.last_ok == bad["_config"][axis]:
        side = "lower" if result.smallest else "higher"
        edge = show(result.last_ok)
        return f"works even at the range's end {axis}={edge}" + (
            f" (confirmed): the boundary is {side}" if result.confirmed else f": the boundary is {side}; confirming"
        )
    if not result.confirmed:
        return f"in progress: {axis}={show(result.last_ok)} works as a probe; bisecting or confirming"
    fail = f", {show(result.first_fail)} {result.first_fail_status}" if result.first_fail is not None else ""
    return f"{axis}={show(result.last_ok)} works{fail}"


def search_results(rows: list[dict[str, Any]], axes: list[str]) -> list[SearchResult]:
    """Every search among these rows (each trial's latest attempt), labelled by `axes` (the
    combination's axes: the sweep's varying ones, the searched axis and epochs left out)."""
    groups: dict[str, list[dict]] = collections.defaultdict(list)
    for row in rows:
        if row.get("search_id"):
            row.setdefault("_config", trial_config(row))
            groups[row["search_id"]].append(row)
    results = []
    for members in groups.values():
        axis = members[0]["search_axis"]
        shown = [a for a in axes if a not in (axis, "epochs", SHARED_KEY)]
        config = members[0]["_config"]
        label = " ".join(f"{a}={show(config.get(a))}" for a in shown) or "(single config)"
        results.append(conclude(members, label))
    return sorted(results, key=lambda r: r.label)


def search_table(rows: list[dict[str, Any]], axes: list[str], title: str) -> TableView | None:
    results = search_results(rows, axes)
    if not results:
        return None
    smallest = results[0].smallest
    word = "smallest" if smallest else "largest"
    headers = ["combination", f"{word} ok", "first fail", "predicted", "probes", "confirmed", "NVML MiB there"]
    if smallest:
        headers += ["uncapped MiB", "slowdown"]
    headers += ["images/s there", "answer"]
    body = []
    for r in results:
        cells = [
            Cell(r.label, "label"),
            Cell(show(r.last_ok) if r.last_ok is not None else "-", "value" if r.confirmed else "none"),
            Cell(
                f"{show(r.first_fail)} {r.first_fail_status}" if r.first_fail is not None else "-",
                "fail" if r.first_fail is not None else "none",
            ),
            Cell(_predicted(r.predicted, smallest) if r.predicted is not None else "-"),
            Cell(str(r.probes)),
            Cell(", ".join(f"{n} {s}" for s, n in sorted(r.confirms.items())) or "-"),
            Cell(fmt_number(r.boundary_mib) if r.boundary_mib is not None else "-"),
        ]
        if smallest:
            cells += [
                Cell(fmt_number(r.reference_mib) if r.reference_mib is not None else "-"),
                Cell(f"{r.slowdown:.2f}x" if r.slowdown is not None else "-"),
            ]
        cells += [
            Cell(fmt_number(r.boundary_images_per_s) if r.boundary_images_per_s is not None else "-"),
            Cell("found" if r.confirmed and r.first_fail is not None else r.verdict, "label"),
        ]
        body.append(cells)
    how = "low" if smallest else "high"
    view = TableView(f"{title}: how {how} can it go ({results[0].axis} search)", headers, body, 1, kind="search")
    view.notes.append(
        "probes look for the boundary (they may share a GPU and run shorter); the found value is re-run exclusive "
        "and full length (confirmed); predicted: where the memory model put the boundary from the probes' memory "
        "(- where it could not: bisection)" + ("; slowdown: steady epoch there / without a cap" if smallest else "")
    )
    return view


def _predicted(value: float, smallest: bool) -> str:
    return f"{value:.4g}" if smallest else str(int(value))
