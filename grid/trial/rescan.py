"""`grid rescan`: the spec's `metrics:` patterns re-applied to the stored logs of a sweep's rows.

A pattern added or fixed after a run changes no trial id, so `grid run` finds nothing to run. A
rescan reads each trial's latest log again and, where the patterns now find other values, writes
the trial's next attempt: the earlier row with the new values and a note naming the attempt whose
log it read. Nothing is replaced: every earlier row stays in the results, readable as before, and
readers take each trial's latest attempt as always.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field

from grid.results.dedupe import latest_attempts
from grid.results.metric_types import MetricTypes
from grid.results.row import Row
from grid.results.store import ResultStore, encode_row
from grid.shared import TrialStatus
from grid.spec.model import GridSpec
from grid.trial.attempt import declared_types
from grid.trial.output import scan


@dataclass
class Rescanned:
    rewritten: list[str] = field(default_factory=list)  # trial ids given a new attempt
    unchanged: int = 0
    no_log: list[str] = field(default_factory=list)


def _log_of(spec: GridSpec, store: ResultStore, record: dict) -> tuple[int, bytes] | None:
    """The attempt's stored log, or that of the attempt a rescan read it from (the latest before it
    with a log); None when there is none."""
    for attempt in range(record["attempt"], -1, -1):
        try:
            return attempt, store.backend.read(store.layout.log(spec.name, record["trial_id"], attempt))
        except (FileNotFoundError, OSError):
            continue
    return None


def _values_of(spec: GridSpec, store: ResultStore, record: dict) -> tuple[int, dict, dict, list[str]] | None:
    """What the patterns find in the attempt's stored log now, or None when it has no log."""
    log = _log_of(spec, store, record)
    if log is None:
        return None
    source, data = log
    with tempfile.NamedTemporaryFile(suffix=".log") as copy:
        copy.write(data)
        copy.flush()
        epochs = len(record.get("epoch_times") or []) or (json.loads(record.get("config_json") or "{}")).get("epochs")
        found = scan(copy.name, 0, spec.metrics, epochs)
    return source, found.values, found.series, found.notes


def rescan(store: ResultStore, spec: GridSpec) -> Rescanned:
    """New attempts for the trials whose stored logs the spec's patterns now read differently."""
    done = Rescanned()
    patterns = {name: m for name, m in spec.metrics.items() if m.pattern is not None}
    if not patterns:
        return done
    types = MetricTypes(store, spec.name)
    claimed = store.claimed(spec.name)
    for record in latest_attempts(store.read(spec.name)).to_pylist():
        if record["status"] == TrialStatus.LOST.value:
            continue
        found = _values_of(spec, store, record)
        if found is None:
            done.no_log.append(record["trial_id"])
            continue
        source, values, series, notes = found
        if all(record.get(name) == values.get(name) for name in patterns):
            done.unchanged += 1
            continue
        row = Row.from_record(record)
        attempt = max(claimed.get(record["trial_id"], -1), record["attempt"]) + 1
        while not store.claim_attempt(spec.name, record["trial_id"], attempt):
            attempt += 1
        row.identity.attempt = attempt
        row.metrics.values.update(values)
        goals = json.loads(record.get("metric_goals_json") or "{}")
        goals.update({name: m.goal for name, m in patterns.items() if m.goal or name not in goals})
        row.metrics.metric_goals_json = json.dumps(goals)
        if series:
            row.metrics.series_json = json.dumps({**json.loads(record.get("series_json") or "{}"), **series})
        kept = [n for n in row.outcome.notes if "matched no output line" not in n]  # the earlier scan's
        row.outcome.notes = kept + notes
        row.notes.append(
            f"rescan: the spec's metrics: patterns applied to attempt {source}'s log (its measurements are "
            f"that attempt's; its row stays in the results)"
        )
        row.notes.extend(types.settle(row.metrics.values, declared_types(spec)))
        store.write_encoded(spec.name, row.trial_id, attempt, encode_row(row, spec.param_kinds(), types.known()))
        done.rewritten.append(row.trial_id)
    return done


def describe(done: Rescanned, spec: GridSpec) -> str:
    parts = [f"sweep {spec.name}: {len(done.rewritten)} trial(s) given a new attempt with the values found"]
    parts.append(f"{done.unchanged} unchanged")
    if done.no_log:
        parts.append(f"{len(done.no_log)} without a stored log ({', '.join(done.no_log[:5])})")
    return ", ".join(parts)
