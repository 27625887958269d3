"""bench_nightly.py's verdicts: each night judged by the new rule (grid compare against a history of
the base nights before it, flagged configs confirmed by a real re-run) and by the rule before it
(one baseline run, the first night, as scripts/nightly.sh kept it: 5% beyond the min-max range of
its repeats), on the same runs."""

from __future__ import annotations

import argparse
import collections
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console

from grid.options import RunOptions
from grid.reports.compare import CompareOptions, compare, confirm, parse_threshold
from grid.reports.table import SHARED_KEY, ok_values, trial_config
from grid.rerun import rerun
from grid.results.dedupe import latest_attempts
from grid.results.history import RUNS
from grid.results.store import ResultStore
from grid.shared import TrialStatus
from grid.spec.expand import canonical_config

SLOW_VAR = "KERAS_SLOWDOWN_PCT"


def rows_of(results: Path) -> list[dict[str, Any]]:
    return latest_attempts(ResultStore(str(results)).read()).to_pylist()


def usable(night: dict, out: Path) -> str | None:
    """Why a night cannot be judged (None: it can): its run failed, or a trial of it shared its CPU
    or GPU with another attempt (its configs then carry gpu_shared and join nothing)."""
    if night["exit"] != 0:
        return f"grid run exited {night['exit']}"
    rows = rows_of(out / night["dir"] / "results")
    if any(SHARED_KEY in trial_config(r) for r in rows):
        return "a trial shared its device with another attempt on the machine"
    return None


def history_of(out: Path, name: str, nights: list[dict]) -> str:
    """A history folder whose runs are links to these nights' results (named in their order)."""
    folder = out / "histories" / name / RUNS
    folder.mkdir(parents=True, exist_ok=True)
    for night in nights:
        link = folder / f"20260101T000000.{night['index']:06d}Z"
        if not link.exists():
            link.symlink_to((out / night["dir"] / "results").resolve())
    return str(folder.parent)


def old_rule(base: list[dict], cur: list[dict], metric: str, threshold: float, higher: bool) -> int:
    """The rule before issue 25: medians 5% apart AND min-max ranges apart is a regression (1); a
    config of the baseline the run lacks, incomplete (3)."""

    def groups(rows: list[dict]) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = collections.defaultdict(list)
        for r in rows:
            out[canonical_config(trial_config(r))].append(r)
        return out

    b, c = groups(base), groups(cur)
    if set(b) - set(c):
        return 3
    for key, rows in b.items():
        bv, cv = ok_values(rows, metric), ok_values(c[key], metric)
        if all(r["status"] == TrialStatus.OK for r in rows) and not all(r["status"] == TrialStatus.OK for r in c[key]):
            return 1
        if not bv or not cv:
            continue
        bm, cm = statistics.median(bv), statistics.median(cv)
        change = (cm - bm) / abs(bm) * 100
        worse = change < 0 if higher else change > 0
        apart = min(cv) > max(bv) or max(cv) < min(bv)
        if worse and abs(change) > threshold and apart:
            return 1
    return 0


def new_rule(args: argparse.Namespace, history: str, night: dict, runner: list[str]) -> dict:
    """grid compare's verdict, flagged configs confirmed by re-running them (--confirm)."""
    current = args.out / night["dir"] / "results"
    opts = CompareOptions(metric=args.metric, threshold=args.threshold, history=args.history)
    result = compare(history, str(current), opts)
    flagged = [v.config for v in result.flagged()]
    if flagged and args.confirm:
        sets = [*args.set, f"env.{SLOW_VAR}={night['slowdown_pct']:g}"]  # as the night ran (0: base)
        run_opts = RunOptions(runner=runner[1], live=False)
        uris = rerun(args.spec, sets, flagged, args.confirm, str(current), run_opts, Console(quiet=True))
        confirm(result, uris, opts)
    kinds = collections.Counter(v.kind for v in result.verdicts)
    return {"exit": result.exit_code, "flagged": len(flagged), "kinds": dict(kinds), "notes": result.notes}


def judge_all(args: argparse.Namespace, nights: list[dict], runner: list[str]) -> dict:
    dropped = {n["dir"]: why for n in nights if (why := usable(n, args.out))}
    kept = [n for n in nights if n["dir"] not in dropped]
    base = [n for n in kept if n["kind"] == "base"]
    if not base:
        raise SystemExit(f"{args.out}: no night of unchanged code to judge against (collect some first)")
    threshold = parse_threshold(args.threshold)
    higher = args.metric.endswith("_per_s")
    first = rows_of(args.out / base[0]["dir"] / "results")
    comparisons = []
    for night in kept:
        old = old_rule(first, rows_of(args.out / night["dir"] / "results"), args.metric, threshold, higher)
        for before in histories(night, base, args.history):
            first_run = before[0]["index"]
            history = history_of(args.out, f"{night['index']:03d}-{first_run:03d}", before)
            new = new_rule(args, history, night, runner)
            comparisons.append(
                {**night, "history": len(before), "history_from": first_run, "new": new, "old_exit": old}
            )
            print(
                f"{night['dir']} against {len(before)} base night(s) from {first_run}: new exit {new['exit']} "
                f"{new['kinds']}, old exit {old}",
                flush=True,
            )
    return {"dropped": dropped, "comparisons": comparisons, **summary(comparisons, args)}


def histories(night: dict, base: list[dict], size: int) -> list[list[dict]]:
    """The histories a night is judged against. A base night: the (up to `size`) base nights before
    it, as the nightly check meets it. A slower night: every window of `size` consecutive base nights,
    before or after it (each a history the slower commit could have met; the windows overlap, so
    these comparisons are not independent: bench.json names each one's window)."""
    if night["kind"] == "base":
        before = [b for b in base if b["index"] < night["index"]][-size:]
        return [before] if before else []
    if len(base) <= size:
        return [base] if base else []
    return [base[i : i + size] for i in range(len(base) - size + 1)]


def smallest(levels: list[float]) -> str:
    return f"{min(levels):g}%" if levels else "none of those tried"


def summary(comparisons: list[dict], args: argparse.Namespace) -> dict:
    rows, levels = [], sorted({c["slowdown_pct"] for c in comparisons})
    figures: dict[str, Any] = {}
    for pct in levels:
        group = [c for c in comparisons if c["slowdown_pct"] == pct]
        new = collections.Counter(c["new"]["exit"] for c in group)
        old = collections.Counter(c["old_exit"] for c in group)
        figures[f"{pct:g}"] = {"n": len(group), "new": dict(new), "old": dict(old)}
        nights = len({c["index"] for c in group})
        label = (
            "identical code" if pct == 0 else f"{pct:g}% slower"
        ) + f" ({nights} night{'s' if nights != 1 else ''})"
        rows.append(f"| {label} | {len(group)} | {old[1]} | {new[1]} | {new[6]} | {new[0]} | {new[3] + new[2]} |")

    def caught(rule: str) -> list[float]:
        """The slowdowns a rule failed (exit 1) in at least 95% of their comparisons."""
        return [p for p in levels if p > 0 and figures[f"{p:g}"][rule].get(1, 0) >= 0.95 * figures[f"{p:g}"]["n"]]

    table = "\n".join(
        [
            f"metric {args.metric}, threshold {args.threshold}, history {args.history}, confirm {args.confirm}",
            "| nights | comparisons | exit 1 before (one baseline, ranges) | exit 1 now | noisy (6) now | ok (0) now "
            "| other now |",
            "|---|---|---|---|---|---|---|",
            *rows,
            f"smallest slowdown caught in >= 95% of comparisons: now {smallest(caught('new'))}, "
            f"before {smallest(caught('old'))}",
        ]
    )
    return {"figures": figures, "table": table}
