"""A spec's `search:` run: per combination of the other axes, the out-of-memory boundary, predicted
from the memory the probes so far used and confirmed in fresh processes, in rounds of real trials
until every search has its answer.

Each search walks a path decided only by the outcomes so far (their statuses and the memory they
used), so a resumed run (or a run with a finer tolerance) reads the outcomes already in the results
and goes on where it stopped:

1. the working end of the range first (a batch of `low`, a fraction of `high`): a value that trains,
   never a ladder of OOMs from the top; for a memory_fraction search, the uncapped reference runs
   in the same round (exclusive, full length, `confirm` times; a round's exclusive trials run
   before its shared probes, so that those load what the exclusive ones compiled);
2. then the boundary the memory model predicts (memory_model.py: linear in the batch; for a fraction,
   the smallest framework peak of a run that trained, over the card) and one step past it, both at
   once; for a batch search with a single point so far, first a batch that surely fits, to draw the
   line through. A batch boundary drawn from batches far below it is probed alone: such a line is
   seldom exact, and the refit through the point it gives lands beside the boundary (where the one
   past it then runs);
3. where the model cannot say (no memory figures, too few points, not linear, proved wrong by an
   outcome), bisection between the last value that worked and the first that failed (the far end of
   the range first, if nothing failed yet), until they are `tolerance` apart;
4. the last working value again, `confirm` times, exclusive and full length. Should a confirmation
   fail, that value counts as failing and the search goes on short of it.

Every step is a trial row of its own (its own process, its own GPU memory), tagged with its search
(`search_id`, `search_axis`, `search_step`, `search_role`, the range, and the boundary the model
predicted when the probe was chosen).
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from grid.errors import ClusterError
from grid.results.store import ResultStore
from grid.scheduler.driver import Scheduler, SweepOutcome
from grid.scheduler.memory_model import Seen, batch_model, contradicted, first_guess, fraction_boundary
from grid.scheduler.resume import Pending, latest_outcomes, plan_attempts
from grid.shared import Trial, TrialStatus
from grid.spec.expand import Expansion, canonical_config, trial_id
from grid.spec.model import GridSpec
from grid.spec.search import SearchSpec

MAX_ROUNDS = 10_000
Lookup = Callable[[str], "Seen | None"]  # trial id -> its latest terminal outcome, None if it must run


@dataclass(frozen=True)
class Combination:
    """One search: a combination of the other axes."""

    search_id: str
    config: dict  # the combination's config (the searched axis at its default)
    label: str


def combinations(spec: GridSpec, expansion: Expansion) -> list[Combination]:
    search = spec.search
    assert search is not None
    out = []
    for trial in expansion.trials:
        key = f"{spec.identity}\n{canonical_config(trial.config)}\n{search.direction} {search.axis}"
        key += f" {search.low} {search.high}"
        search_id = hashlib.sha256(key.encode()).hexdigest()[:12]
        out.append(Combination(search_id, dict(trial.config), trial.describe(list(spec.axes)) or "(single config)"))
    return out


def round_value(value: float, integer: bool) -> float | int:
    return int(value) if integer else round(value, 6)


@dataclass
class Walk:
    """The trials a search has taken and the one(s) it needs next."""

    spec: GridSpec
    combo: Combination
    lookup: Lookup
    needed: list[Trial] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)  # the outcomes of its probes and references so far
    step: int = 0
    done: bool = False
    model_failed: bool = False  # an outcome contradicted the memory model: bisection from then on

    @property
    def search(self) -> SearchSpec:
        assert self.spec.search is not None
        return self.spec.search

    def _trial(
        self, role: str, value: float | int | None, repeat: int, step: int, predicted: float | None = None
    ) -> Trial:
        search = self.search
        config = {**self.combo.config, search.axis: value}
        if role == "probe" and search.probe_epochs is not None:
            config["epochs"] = search.probe_epochs
        steps = search.probe_steps if role == "probe" and search.probe_steps else None
        tid = trial_id(f"{self.spec.identity}\nsearch {role}" + (f" {steps} steps" if steps else ""), config, repeat)
        tags = {
            "search_id": self.combo.search_id,
            "search_axis": search.axis,
            "search_step": step,
            "search_role": role,
            "search_low": float(search.low),
            "search_high": float(search.high),
            "search_predicted": None if predicted is None else float(predicted),
        }
        shares = role == "probe" and search.share_probes
        return Trial(tid, self.spec.workload, config, repeat, 0, not shares, tags, steps)

    def look(self, trial: Trial, measures: bool = True) -> Seen | None:
        """The trial's outcome, or None (it is needed); `measures`: its memory joins the model's points."""
        found = self.lookup(trial.trial_id)
        if found is None:
            self.needed.append(trial)
        elif measures:
            self.seen.append(found)
        return found

    def probes(
        self, values: list[float | int], predicted: float | None = None, confirm_at: float | int | None = None
    ) -> list[Seen | None]:
        """One round of probes, run at once (they share GPUs by footprint). `confirm_at`: the value
        among them that runs as its first confirmation instead (full length, exclusive), likely the
        answer: should the bracket close on it, that confirmation is not run again."""
        self.step += 1
        return [
            self.look(self._trial("confirm" if v == confirm_at else "probe", v, 0, self.step, predicted))
            for v in values
        ]

    def confirm(self, value: float | int) -> list[Seen | None]:
        self.step += 1
        trials = [self._trial("confirm", value, r, self.step) for r in range(self.search.confirm)]
        return [self.look(t, measures=False) for t in trials]

    def references(self) -> list[Seen | None]:
        """The uncapped runs a memory_fraction search's slowdown and memory need are measured on."""
        if self.search.axis != "memory_fraction":
            return []
        return [self.look(self._trial("reference", None, r, 0)) for r in range(max(1, self.search.confirm))]


def fails(seen: Seen | None) -> bool:
    return seen is not None and seen.status is not TrialStatus.OK


class _Bracket:
    """The last value that worked and the first that failed, in the search's direction."""

    def __init__(self, largest: bool, good: float | int):
        self.largest = largest
        self.ok: float | int = good
        self.fail: float | int | None = None
        self.passed: list[float | int] = [good]

    def further(self, a: float | int, b: float | int) -> bool:
        """Whether `a` lies beyond `b`, toward running out of memory."""
        return a > b if self.largest else a < b

    def add(self, value: float | int, seen: Seen) -> None:
        if fails(seen):
            if self.fail is None or self.further(self.fail, value):
                self.fail = value
        else:
            self.passed.append(value)
            if self.further(value, self.ok):
                self.ok = value

    def inside(self, value: float | int) -> bool:
        """Strictly between the last value that worked and the first that failed."""
        return self.further(value, self.ok) and (self.fail is None or self.further(self.fail, value))


def _predicted(w: Walk, bracket: _Bracket) -> float | None:
    """The boundary the memory model sees now (None: it cannot say, or it was proved wrong)."""
    search = w.search
    if w.model_failed:
        return None
    boundary: float | None
    if search.integer:
        model = batch_model(w.seen, w.combo.config.get("memory_fraction"))
        boundary = None if model is None else model.boundary()
    else:
        boundary = fraction_boundary(w.seen)
    slack = max(3 * search.tolerance, 0.05 * abs(boundary)) if boundary is not None else 0.0
    if boundary is not None and contradicted(boundary, w.seen, bracket.largest, slack):
        w.model_failed = True
        return None
    return boundary


def _next_values(w: Walk, bracket: _Bracket) -> tuple[list[float | int], float | None]:
    """The next round's probe values, and the boundary the model predicted for them (None: bisection)."""
    search = w.search
    tol, integer = search.tolerance, search.integer
    bad = search.high if bracket.largest else search.low
    step = tol if bracket.largest else -tol
    predicted = _predicted(w, bracket)
    if predicted is None and integer and bracket.fail is None and not w.model_failed:
        first = next((s for s in w.seen if s.ok and s.value == bracket.ok), None)
        need = None if first is None else (first.peak_mib if first.peak_mib is not None else first.framework_mib)
        if need and first is not None and first.card_mib:
            capacity = first.card_mib * (w.combo.config.get("memory_fraction") or 1.0)
            guess = min(first_guess(int(bracket.ok), need, capacity), int(bad))
            if bracket.inside(guess) or guess == bad:
                return [guess], None
    if predicted is not None:
        at: float | int
        if integer:
            at = min(max(int(predicted), int(bracket.ok)), int(bad))
        else:  # the smallest fraction on the tolerance grid that holds the need
            at = round_value(math.ceil(round(predicted / tol, 6)) * tol, False)
            at = min(max(at, bad), bracket.ok)
        if bracket.fail is not None and not bracket.further(bracket.fail, at):
            at = round_value(bracket.fail - step, integer)  # a little optimistic: just short of what failed
        candidates = (at, round_value(at + step, integer))
        values = [v for v in candidates if bracket.inside(v) and not bracket.further(v, bad)]
        beside = bracket.further(at, bracket.ok) and abs(at - bracket.ok) <= NEAR * abs(at)
        if integer and not beside:
            values = values[:1]  # drawn from far below: seldom exact, so one past it would seldom decide
        if values:
            return values, predicted
    if bracket.fail is None:  # nothing failed yet: the far end of the range
        return ([bad], None) if bracket.inside(bad) else ([], None)
    mid = round_value((bracket.ok + bracket.fail) / 2, integer)
    return ([mid], None) if bracket.inside(mid) else ([], None)


NEAR = 0.1  # a predicted boundary this close (relative) to a value that trained is likely the answer


def _early_confirm(w: Walk, values: list[float | int], predicted: float | None) -> float | int | None:
    """The value of a predicted round of a batch search (a boundary and one past it) that runs as
    its first confirmation instead of as a probe: the boundary. A batch search predicts such a pair
    only where a value that trained lies within NEAR of the boundary (_next_values: the line then
    runs through a point beside it, a refit, seldom wrong); a first prediction from small batches
    far below is a probe alone (a confirmation is full length: a wrong one costs a whole run). Not
    where probes share GPUs (a fraction search's: a confirmation runs alone). None: all probes."""
    search = w.search
    if predicted is None or not search.integer or search.confirm < 1 or len(values) < 2:
        return None
    return values[0]


def walk(spec: GridSpec, combo: Combination, lookup: Lookup) -> Walk:
    """Replay the search over the outcomes known so far; `needed` is what it runs next."""
    w = Walk(spec, combo, lookup)
    search = w.search
    largest = search.direction == "largest"
    good = search.low if largest else search.high
    references = w.references()
    (first,) = w.probes([good])
    if first is None or any(r is None for r in references):
        return w
    if fails(first):
        w.done = not w.needed
        return w  # even the working end fails: that is the answer
    bracket = _Bracket(largest, good)
    while True:
        while bracket.fail is None or abs(bracket.ok - bracket.fail) > search.tolerance * (1 + 1e-9):
            values, predicted = _next_values(w, bracket)
            if not values:
                break
            outcomes = w.probes(values, predicted, _early_confirm(w, values, predicted))
            if any(o is None for o in outcomes):
                return w
            for value, outcome in zip(values, outcomes):
                assert outcome is not None
                bracket.add(value, outcome)
        statuses = w.confirm(bracket.ok)
        if any(s is None for s in statuses):
            return w
        if not any(fails(s) for s in statuses):
            w.done = not w.needed
            return w
        # it worked as a probe but not when confirmed: count it as failing
        failed = bracket.ok
        bracket.fail = failed if bracket.fail is None or bracket.further(bracket.fail, failed) else bracket.fail
        short = [v for v in bracket.passed if bracket.further(failed, v)]
        if not short:
            w.done = not w.needed
            return w
        bracket.ok = max(short) if largest else min(short)


def next_trials(
    spec: GridSpec, combos: list[Combination], outcomes: dict[str, Seen], rerun: set[str]
) -> tuple[list[Trial], int]:
    """Every search's next trials (numbered for the progress display), and how many searches are done.
    `rerun`: trial ids whose outcome does not count (failed ones that --retry-failed runs again)."""

    def lookup(tid: str) -> Seen | None:
        seen = outcomes.get(tid)
        if seen is None or tid in rerun or not seen.status.is_terminal:
            return None
        return seen

    needed: list[Trial] = []
    done = 0
    for combo in combos:
        w = walk(spec, combo, lookup)
        done += w.done
        needed += w.needed
    # One trial per id (two searches never share one; to be safe), the round's exclusive trials
    # (uncapped references, confirmations) first: the driver hands out the queue in order, so each
    # compiles its program alone, and the probes that share a GPU after them load what it compiled.
    # Queued behind probes, a reference waited for them to end and a probe compiled cold in a
    # packed round (an H100: 13.8 s, where cached probes took 4-5 s).
    unique = sorted({t.trial_id: t for t in needed}.values(), key=lambda t: not t.exclusive)
    numbered = [
        Trial(t.trial_id, t.workload, t.config, t.repeat, i, t.exclusive, t.tags, t.stop_after_steps)
        for i, t in enumerate(unique)
    ]
    return numbered, done


def plan_text(search: SearchSpec, combos: int) -> str:
    """What `grid plan` says of a search: its range and the trials it takes at most."""
    refs = max(1, search.confirm) if search.axis == "memory_fraction" else 0
    per = search.probes() + search.confirm + refs
    epochs = f", probes run {search.probe_epochs} epoch(s)" if search.probe_epochs else ""
    model = "linear in it" if search.integer else "its framework's peak over the card"
    return (
        f"search: the {search.direction} {search.axis} that does not run out of memory, in "
        f"{search.low}..{search.high} to within {search.tolerance}, per combination: up to {search.probes()} "
        f"probe(s) by bisection, fewer where the memory model holds (about 4 where memory is {model}; "
        f"sharing GPUs{epochs}), {search.confirm} confirmation(s)"
        + (f" and {refs} uncapped reference run(s)" if refs else "")
        + f" (exclusive, timed); {combos} combination(s), about {per * combos} trial(s) in all at most; "
        f"{{{search.axis}}} is each trial's searched value (in a command, GRID_{search.axis.upper()} and its config)"
    )


def outcomes(table: pa.Table) -> dict[str, Seen]:
    """trial id -> its latest attempt's outcome, with the memory it used (the model's input)."""
    if table.num_rows == 0:
        return {}

    def column(name: str) -> list[Any]:
        return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows

    rows = zip(
        column("trial_id"),
        column("attempt"),
        column("status"),
        column("gpu_mem_peak_mib"),
        column("framework_peak_mib"),
        column("gpu_total_mib"),
        column("gpu_ids"),
        column("config_json"),
        column("search_axis"),
    )
    latest: dict[str, tuple[int, Seen]] = {}
    for tid, attempt, status, peak, framework, card, gpus, config, axis in rows:
        if tid in latest and latest[tid][0] >= attempt:
            continue
        value = json.loads(config).get(axis) if config and axis else None
        per_gpu = None if peak is None else peak / max(1, len(gpus or []))
        latest[tid] = (attempt, Seen(TrialStatus(status), value, per_gpu, framework, card))
    return {tid: seen for tid, (_, seen) in latest.items()}


class SearchRun:
    """The rounds of a sweep's searches: each round runs every search's next trials at once."""

    def __init__(self, spec: GridSpec, expansion: Expansion, store: ResultStore, retry_failed: bool = False):
        self.spec, self.store = spec, store
        self.combos = combinations(spec, expansion)
        known = latest_outcomes(store.read(spec.name))
        # --retry-failed: failed trials the searches reach run once more in this run
        self.rerun = {t for t, (_, s) in known.items() if retry_failed and s.is_retryable}
        self.done = 0

    def next_round(self) -> list[Pending]:
        trials, self.done = next_trials(self.spec, self.combos, outcomes(self.store.read(self.spec.name)), self.rerun)
        pending, _ = plan_attempts(self.spec, trials, self.store, retry_failed=True)
        self.rerun -= {p.trial.trial_id for p in pending}
        return pending

    def run(self, scheduler: Scheduler, pending: list[Pending], say: Callable[[str], None]) -> SweepOutcome:
        total = SweepOutcome(rows=[], total=0, skipped=0)
        previous: set[str] = set()
        for number in range(1, MAX_ROUNDS + 1):
            if not pending:
                break
            roles = collections.Counter(p.trial.tags["search_role"] for p in pending)
            say(
                f"[grid] search round {number}: {len(self.combos) - self.done} of {len(self.combos)} search(es) "
                f"going on, running " + ", ".join(f"{n} {role}(s)" for role, n in sorted(roles.items()))
            )
            outcome = scheduler.run(pending, 0)
            total.rows += outcome.rows
            total.total += outcome.total
            total.lost += outcome.lost
            total.kept += outcome.kept
            total.unusable = outcome.unusable
            ids = {p.trial.trial_id for p in pending}
            pending = self.next_round()
            if ids == previous and {p.trial.trial_id for p in pending} == ids:
                raise ClusterError(
                    f"the searches made no progress in two rounds: {len(ids)} trial(s) were lost twice over; "
                    f"finished steps are in the results, run again when the cluster is healthy"
                )
            previous = ids
        return total
