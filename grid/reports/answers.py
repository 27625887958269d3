"""What a report leads with: the answer to "which configuration is fastest and leanest?".

- the fastest configuration (images/s, else steady epoch) and the leanest one that ran (NVML peak),
  both from timed runs only: a search's probes and trials that shared their GPU are left out;
- per combination of the other axes (backend x batch size), the smallest memory fraction that
  worked and the first that failed below it;
- the Pareto front of peak GPU memory against images/s: the configurations no other beats on both;
- the study's own table, per combination: from no cap down to the first out-of-memory fraction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grid.reports.law import law_axes
from grid.reports.sharing import sharing_text
from grid.reports.table import (
    SHARED_KEY,
    Cell,
    Group,
    TableView,
    describe,
    fmt_number,
    group_rows,
    median_ok,
    metric_cell,
    show,
    split_keys,
    status_cell,
)


@dataclass(frozen=True)
class Point:
    """A config's timed repeats reduced to medians."""

    config: dict[str, Any]
    label: str
    memory_mib: float | None
    images_per_s: float | None
    steady_epoch_s: float | None
    joules_per_image: float | None = None
    wall_s: float | None = None
    peak_rss_mib: float | None = None


@dataclass
class Answers:
    points: list[Point] = field(default_factory=list)
    fastest: Point | None = None
    leanest: Point | None = None
    greenest: Point | None = None  # the least GPU energy per image trained
    front: list[Point] = field(default_factory=list)
    smallest: list[dict[str, Any]] = field(default_factory=list)  # per combination
    notes: list[str] = field(default_factory=list)
    left_out: str = ""  # why the trials that shared a GPU are not in these answers
    fastest_by: str = ""  # what "fastest" was judged by: images/s, steady epoch, wall time
    leanest_by: str = ""  # NVML GPU memory, else peak RSS

    def as_json(self) -> dict[str, Any]:
        def point(p: Point | None) -> dict[str, Any] | None:
            return None if p is None else {k: v for k, v in p.__dict__.items() if k != "label"}

        return {
            "fastest": point(self.fastest),
            "fastest_by": self.fastest_by or None,
            "leanest": point(self.leanest),
            "leanest_by": self.leanest_by or None,
            "least_energy_per_image": point(self.greenest),
            "pareto_front": [point(p) for p in self.front],
            "smallest_working_fraction": self.smallest,
            "notes": [*self.notes, *([self.left_out] if self.left_out else [])],
        }


def timed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose timings stand for their config: not a probe, not on a shared GPU."""
    return [r for r in rows if r.get("search_role") != "probe" and not r["_config"].get(SHARED_KEY)]


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both memory (lower) and images/s (higher), by memory."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.memory_mib, -(p.images_per_s or 0))):
        if p.memory_mib is None or p.images_per_s is None:
            continue
        if not front or p.images_per_s > (front[-1].images_per_s or 0):
            front.append(p)
    return front


def smallest_fractions(rows: list[dict[str, Any]], axes: list[str]) -> list[dict[str, Any]]:
    """Per combination: the smallest fraction whose trials all worked, the first failing one below it."""
    keys = law_axes(axes)
    out = []
    for group in group_rows([r for r in rows if "memory_fraction" in r["_config"]], keys):
        by_fraction = group_rows(group.rows, ["memory_fraction"])
        capped = [g for g in by_fraction if g.key[0] is not None]
        if not capped:
            continue
        working = [g.key[0] for g in capped if g.ok() and not g.failures()]
        lowest = min(working) if working else None
        failing = {g.key[0]: g.failures().most_common(1)[0][0] for g in capped if g.failures()}
        below = [f for f in failing if lowest is None or f < lowest]
        first_fail = max(below) if below else None
        out.append(
            {
                "combination": dict(zip(keys, group.key)),
                "smallest_ok": lowest,
                "first_fail": first_fail,
                "first_fail_status": failing.get(first_fail) if first_fail is not None else None,
                "fractions_tried": len(capped),
            }
        )
    return out


def varying(rows: list[dict[str, Any]], axes: list[str]) -> list[str]:
    """The axes whose value differs among these rows."""
    moving = split_keys([r["_config"] for r in rows])[0]
    return [a for a in axes if a in moving]


def answers(rows: list[dict[str, Any]], axes: list[str]) -> Answers:
    result = Answers()
    chosen = timed(rows)
    tagged = [r for r in rows if r.get("search_role") != "probe" and r["_config"].get(SHARED_KEY)]
    if tagged:
        result.left_out = (
            f"{len(tagged)} trial(s) left out because they shared a GPU, so their timings are not a GPU's own: "
            f"{sharing_text(tagged)}"
        )
    named = varying(chosen, axes)  # a label names what differs among the timed runs only
    for group in group_rows(chosen, axes):
        if group.ok():
            config = dict(zip(axes, group.key))
            result.points.append(
                Point(
                    config,
                    describe(group.rows[0], named),
                    median_ok(group.rows, "gpu_mem_peak_mib"),
                    median_ok(group.rows, "images_per_s"),
                    median_ok(group.rows, "steady_epoch_s"),
                    median_ok(group.rows, "joules_per_image"),
                    median_ok(group.rows, "wall_s"),
                    median_ok(group.rows, "peak_rss_mib"),
                )
            )
    _fastest(result)
    _leanest(result)
    by_energy = [p for p in result.points if p.joules_per_image is not None]
    result.greenest = min(by_energy, key=lambda p: p.joules_per_image or 0) if by_energy else None
    result.front = pareto_front(result.points)
    result.smallest = smallest_fractions(rows, axes)
    return result


def _fastest(result: Answers) -> None:
    """By images/s, else by steady epoch (where there are epochs), else by wall time, said so."""
    for by, key, best in (
        ("images/s", "images_per_s", max),
        ("steady epoch", "steady_epoch_s", min),
        ("wall time (no steady epoch measured)", "wall_s", min),
    ):
        measured = [p for p in result.points if getattr(p, key) is not None]
        if measured:
            result.fastest, result.fastest_by = best(measured, key=lambda p: getattr(p, key)), by
            return


def _leanest(result: Answers) -> None:
    """By NVML's GPU memory, else by the peak RSS of the process tree, said so."""
    for by, key in (("NVML GPU memory", "memory_mib"), ("peak RSS (no GPU memory measured)", "peak_rss_mib")):
        measured = [p for p in result.points if getattr(p, key) is not None]
        if measured:
            result.leanest, result.leanest_by = min(measured, key=lambda p: getattr(p, key)), by
            break
    if result.points and not any(p.memory_mib is not None for p in result.points):
        result.notes.append("no GPU memory measured (no GPU): the Pareto front needs NVML figures")


def point_text(p: Point | None) -> str:
    if p is None:
        return "-"
    parts = [p.label]
    if p.images_per_s is not None:
        parts.append(f"{fmt_number(p.images_per_s)} images/s")
    elif p.steady_epoch_s is not None:
        parts.append(f"steady epoch {fmt_number(p.steady_epoch_s)} s")
    elif p.wall_s is not None:
        parts.append(f"wall {fmt_number(p.wall_s)} s")
    if p.memory_mib is not None:
        parts.append(f"{fmt_number(p.memory_mib)} MiB")
    elif p.peak_rss_mib is not None:
        parts.append(f"peak RSS {fmt_number(p.peak_rss_mib)} MiB")
    if p.joules_per_image is not None:
        parts.append(f"{p.joules_per_image:.3g} J/image")
    return ", ".join(parts)


def _by(question: str, by: str) -> str:
    return f"{question}, by {by}" if by else question


def answer_lines(found: Answers) -> list[str]:
    """The answer in a few lines, for the end of a run."""
    if not found.points:
        return [found.left_out] if found.left_out else []
    lines = [
        f"{_by('fastest', found.fastest_by)}: {point_text(found.fastest)}",
        f"{_by('leanest that ran', found.leanest_by)}: {point_text(found.leanest)}",
    ]
    return lines + ([found.left_out] if found.left_out else [])


def answer_table(found: Answers, title: str) -> TableView | None:
    if not found.points and not found.smallest and not found.left_out:
        return None
    body = [
        [Cell(_by("fastest", found.fastest_by), "label"), Cell(point_text(found.fastest), "label")],
        [Cell(_by("leanest that ran", found.leanest_by), "label"), Cell(point_text(found.leanest), "label")],
    ]
    if found.greenest is not None:
        body.append([Cell("least energy per image", "label"), Cell(point_text(found.greenest), "label")])
    for entry in found.smallest:
        name = " ".join(f"{a}={show(v)}" for a, v in entry["combination"].items()) or "all"
        ok = entry["smallest_ok"]
        text = f"memory_fraction={show(ok)} works" if ok is not None else "no capped fraction worked"
        if entry["first_fail"] is not None:
            text += f", {show(entry['first_fail'])} {entry['first_fail_status']}"
        tried = entry["fractions_tried"]
        text += f" ({tried} fraction{'s' if tried != 1 else ''} tried)"
        body.append([Cell(f"smallest fraction, {name}", "label"), Cell(text)])
    view = TableView(f"{title}: the answer", ["question", "answer"], body, 1, kind="answer")
    view.notes += [*found.notes, "timed runs only: search probes and trials that shared a GPU are left out"]
    if found.left_out:
        view.notes.append(found.left_out)
    return view


def pareto_table(found: Answers, title: str) -> TableView | None:
    if len(found.front) < 1 or all(p.memory_mib is None for p in found.points):
        return None
    body = [
        [
            Cell(p.label, "label"),
            Cell(fmt_number(p.memory_mib or 0)),
            Cell(fmt_number(p.images_per_s or 0)),
            Cell(fmt_number(p.steady_epoch_s) if p.steady_epoch_s is not None else "-"),
        ]
        for p in found.front
    ]
    headers = ["config", "NVML MiB", "images/s", "epoch s"]
    view = TableView(f"{title}: Pareto front, peak GPU memory vs images/s", headers, body, 1, kind="pareto")
    view.notes.append(
        f"{len(found.front)} of {len(found.points)} timed configs: none of the others is both leaner and faster"
    )
    return view


SEED_METRICS = ("gpu_mem_peak_mib", "framework_peak_mib", "steady_epoch_s", "images_per_s")


def seed_tables(rows: list[dict[str, Any]], axes: list[str], title: str) -> list[TableView]:
    """Per combination, the study's own table: no cap first, then each fraction down to the first failure."""
    keys = law_axes(axes)
    views = []
    for group in group_rows([r for r in rows if "memory_fraction" in r["_config"]], keys):
        fractions = group_rows(group.rows, ["memory_fraction"])
        if len(fractions) < 2:
            continue
        ordered = sorted(fractions, key=lambda g: (g.key[0] is not None, -(g.key[0] or 0)))
        body = []
        for at in ordered:
            clock = Group(at.key, timed(at.rows))  # timings from timed runs only, memory from every run
            cells = [metric_cell(at, m) for m in SEED_METRICS[:2]]
            cells += [metric_cell(clock, m) if clock.rows else Cell("-", "none") for m in SEED_METRICS[2:]]
            failures = at.failures()
            status = status_cell(at)
            body.append([Cell("no cap" if at.key[0] is None else show(at.key[0]), "label"), *cells, status])
            if failures and at.key[0] is not None:
                break
        name = " ".join(f"{a}={show(v)}" for a, v in zip(keys, group.key)) or "all"
        view = TableView(
            f"{title}, {name}: from no cap down to the first failure",
            ["memory_fraction", "NVML MiB", "framework MiB", "epoch s", "images/s", "status"],
            body,
            1,
            kind="seed",
        )
        view.notes.append("memory from every run; epoch s and images/s from timed runs only (not search probes)")
        views.append(view)
    return views
