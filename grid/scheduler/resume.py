"""Resume: what of a sweep still has to run, numbered after every attempt already claimed (an
attempt cut off before it wrote a row keeps its number: a log is never shared by two runs)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa

from grid.results.store import ResultStore
from grid.shared import Trial, TrialStatus
from grid.spec.model import GridSpec


@dataclass
class Pending:
    trial: Trial
    attempt: int
    retries_left: int
    queued_at: float = field(default_factory=time.time)


def latest_outcomes(table: pa.Table) -> dict[str, tuple[int, TrialStatus]]:
    """trial id -> (its latest attempt, that attempt's status)."""
    last: dict[str, tuple[int, TrialStatus]] = {}
    if table.num_rows == 0:
        return last
    for tid, attempt, status in zip(
        table.column("trial_id").to_pylist(), table.column("attempt").to_pylist(), table.column("status").to_pylist()
    ):
        if tid not in last or attempt > last[tid][0]:
            last[tid] = (attempt, TrialStatus(status))
    return last


def plan_attempts(
    spec: GridSpec, trials: list[Trial], store: ResultStore, retry_failed: bool = False
) -> tuple[list[Pending], int]:
    """What still has to run, with attempt numbers after those already recorded; and how many are done."""
    last = latest_outcomes(store.read(spec.name))
    claimed = store.claimed(spec.name)
    todo, skipped = [], 0
    for trial in trials:
        if trial.trial_id in last:
            state = last[trial.trial_id][1]
            if state.is_terminal and not (retry_failed and state.is_retryable):
                skipped += 1
                continue
        done = last[trial.trial_id][0] if trial.trial_id in last else -1
        nxt = max(done, claimed.get(trial.trial_id, -1)) + 1
        todo.append(Pending(trial, nxt, spec.retries))
    return todo, skipped
