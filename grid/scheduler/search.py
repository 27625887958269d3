"""A spec's `search:` run: per combination of the other axes, bisection for the out-of-memory
boundary, in rounds of real trials until every search has its answer.

Each search walks a fixed path decided only by the outcomes so far, so a resumed run (or a run with
a finer tolerance) reads the outcomes already in the results and goes on where it stopped:

1. both ends of the range at once (probes: not exclusive, `probe_epochs`), and the reference run
   without a cap (a memory_fraction search; exclusive, full length, `confirm` times);
2. if the working end fails, or the failing end already works, that is the answer; otherwise
   bisection between the last value that worked and the first that failed, one probe per round,
   until they are `tolerance` apart;
3. the last working value again, `confirm` times, exclusive and full length. Should a confirmation
   fail, that value counts as failing and the search goes on above it (below it for a batch size).

Every step is a trial row of its own (its own process, its own GPU memory), tagged with its search
(`search_id`, `search_axis`, `search_step`, `search_role`).
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from grid.errors import ClusterError
from grid.results.store import ResultStore
from grid.scheduler.driver import Scheduler, SweepOutcome
from grid.scheduler.resume import Pending, latest_outcomes, plan_attempts
from grid.shared import Trial, TrialStatus
from grid.spec.expand import Expansion, canonical_config, trial_id
from grid.spec.model import GridSpec
from grid.spec.search import SearchSpec

MAX_ROUNDS = 10_000
Lookup = Callable[[str], "TrialStatus | None"]  # trial id -> its latest terminal status, None if it must run


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
    step: int = 0
    done: bool = False

    @property
    def search(self) -> SearchSpec:
        assert self.spec.search is not None
        return self.spec.search

    def _trial(self, role: str, value: float | int | None, repeat: int, step: int) -> Trial:
        search = self.search
        config = {**self.combo.config, search.axis: value}
        if role == "probe" and search.probe_epochs is not None:
            config["epochs"] = search.probe_epochs
        tid = trial_id(f"{self.spec.identity}\nsearch {role}", config, repeat)
        tags = {
            "search_id": self.combo.search_id,
            "search_axis": search.axis,
            "search_step": step,
            "search_role": role,
        }
        return Trial(tid, self.spec.workload, config, repeat, 0, exclusive=role != "probe", tags=tags)

    def look(self, trial: Trial) -> TrialStatus | None:
        status = self.lookup(trial.trial_id)
        if status is None:
            self.needed.append(trial)
        return status

    def probe(self, value: float | int) -> TrialStatus | None:
        self.step += 1
        return self.look(self._trial("probe", value, 0, self.step))

    def confirm(self, value: float | int) -> list[TrialStatus | None]:
        self.step += 1
        return [self.look(self._trial("confirm", value, r, self.step)) for r in range(self.search.confirm)]

    def references(self) -> None:
        """The uncapped runs a memory_fraction search's slowdown is measured against."""
        if self.search.axis == "memory_fraction":
            for repeat in range(max(1, self.search.confirm)):
                self.look(self._trial("reference", None, repeat, 0))


def fails(status: TrialStatus | None) -> bool:
    return status is not None and status is not TrialStatus.OK


def walk(spec: GridSpec, combo: Combination, lookup: Lookup) -> Walk:
    """Replay the search over the outcomes known so far; `needed` is what it runs next."""
    w = Walk(spec, combo, lookup)
    search = w.search
    w.references()
    smallest = search.direction == "smallest"
    good, bad = (search.high, search.low) if smallest else (search.low, search.high)
    first, second = w.probe(good), w.probe(bad)
    if first is None or second is None:
        return w
    if fails(first):
        w.done = not w.needed
        return w  # even the working end fails: that is the answer
    passed = [good]
    ok: float | int = good
    failed: float | int | None = bad if fails(second) else None
    if failed is None:
        ok = bad  # the failing end works too: the boundary lies beyond the range
        passed.append(bad)
    while True:
        while failed is not None and abs(ok - failed) > search.tolerance:
            mid = round_value((ok + failed) / 2, search.integer)
            if mid in (ok, failed):
                break
            status = w.probe(mid)
            if status is None:
                return w
            if fails(status):
                failed = mid
            else:
                ok = mid
                passed.append(mid)
        statuses = w.confirm(ok)
        if any(s is None for s in statuses):
            return w
        if not any(fails(s) for s in statuses):
            w.done = not w.needed
            return w
        failed = ok  # it worked as a probe but not when confirmed: count it as failing
        beyond = [v for v in passed if (v > failed if smallest else v < failed)]
        if not beyond:
            w.done = not w.needed
            return w
        ok = min(beyond) if smallest else max(beyond)


def next_trials(
    spec: GridSpec, combos: list[Combination], statuses: dict[str, TrialStatus], rerun: set[str]
) -> tuple[list[Trial], int]:
    """Every search's next trials (numbered for the progress display), and how many searches are done.
    `rerun`: trial ids whose outcome does not count (failed ones that --retry-failed runs again)."""

    def lookup(tid: str) -> TrialStatus | None:
        status = statuses.get(tid)
        if status is None or tid in rerun or not status.is_terminal:
            return None
        return status

    needed: list[Trial] = []
    done = 0
    for combo in combos:
        w = walk(spec, combo, lookup)
        done += w.done
        needed += w.needed
    unique = {t.trial_id: t for t in needed}.values()  # two searches never share a trial; be safe
    numbered = [Trial(t.trial_id, t.workload, t.config, t.repeat, i, t.exclusive, t.tags) for i, t in enumerate(unique)]
    return numbered, done


def plan_text(search: SearchSpec, combos: int) -> str:
    """What `grid plan` says of a search: its range and the trials it takes at most."""
    refs = max(1, search.confirm) if search.axis == "memory_fraction" else 0
    per = search.probes() + search.confirm + refs
    epochs = f", probes run {search.probe_epochs} epoch(s)" if search.probe_epochs else ""
    return (
        f"search: the {search.direction} {search.axis} that does not run out of memory, in "
        f"{search.low}..{search.high} to within {search.tolerance}, per combination: up to {search.probes()} "
        f"probe(s) (sharing GPUs{epochs}), {search.confirm} confirmation(s)"
        + (f" and {refs} uncapped reference run(s)" if refs else "")
        + f" (exclusive, timed); {combos} combination(s), about {per * combos} trial(s) in all"
    )


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
        statuses = {tid: status for tid, (_, status) in latest_outcomes(self.store.read(self.spec.name)).items()}
        trials, self.done = next_trials(self.spec, self.combos, statuses, self.rerun)
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
