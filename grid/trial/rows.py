"""The rows of an attempt, built in one place: what every row has (identity, config, settings,
placement, times), and the row of an attempt that did not run its course: gpu-grid could not
carry it through on the worker, gpu-grid's own code failed, or its worker or node was lost (the
driver's row). Every path that writes a row starts here."""

from __future__ import annotations

import time
import traceback

from grid.results.row import Identity, Outcome, Row, Search, Settings, Times, Where
from grid.shared import AttemptTimes, Placement, Trial, TrialStatus, utc_time
from grid.spec.expand import canonical_config
from grid.spec.model import GridSpec
from grid.version import __version__

TEXT_CHARS = 4000  # an error's message and traceback keep their last characters, where the cause is
WORKER_FAILED = "the worker failed to run or record this attempt (not the trial's own error)"


def last_chars(text: str, limit: int = TEXT_CHARS) -> str:
    """The end of a long text (a message, a traceback, a log): where the cause is written."""
    return text[-limit:]


def begin(spec: GridSpec, trial: Trial, attempt: int, placement: Placement | None, times: AttemptTimes | None) -> Row:
    """The columns every row of the attempt has, whatever happens to it."""
    row = Row(
        Identity(
            sweep=spec.name,
            trial_id=trial.trial_id,
            attempt=attempt,
            repeat=trial.repeat,
            workload=trial.workload,
            target=spec.workload_def.target_for(trial.config.get("backend")).text(),
            workdir=None if spec.workload_def.builtin else spec.workdir,
            script=", ".join(spec.script.paths) or None,
            script_sha256=spec.script.sha256,
            config_json=canonical_config(trial.config),
        ),
        config=dict(trial.config),
        settings=Settings(memory_limit_mib=spec.memory_limit_mib, exclusive=trial.exclusive, timeout_s=spec.timeout_s),
        search=Search(**trial.tags),
    )
    row.versions.grid_version = __version__
    if placement is not None:
        row.where = Where(placement.host, placement.node_id, list(placement.workers), list(placement.gpu_ids))
    if times is not None:
        row.times = Times(queued_at=utc_time(times.queued_at), dispatched_at=utc_time(times.dispatched_at))
    return row


def outcome_of(status: TrialStatus, error: BaseException) -> Outcome:
    """An outcome with an exception's evidence: its qualified type, its message and traceback."""
    return Outcome(
        status=status,
        error_type=f"{type(error).__module__}.{type(error).__qualname__}",
        error_message=last_chars(str(error)),
        error_tail=last_chars("".join(traceback.format_exception(type(error), error, error.__traceback__))),
    )


def failed(
    spec: GridSpec,
    trial: Trial,
    attempt: int,
    placement: Placement | None,
    times: AttemptTimes | None,
    status: TrialStatus,
    error: BaseException,
    *,
    started: float | None = None,
    note: str | None = None,
) -> Row:
    """The row of an attempt that ended in `error` outside the trial's own process: gpu-grid's on
    the worker (error), or the loss of its worker or node (lost). `started`: when the attempt
    began (now where it is not known)."""
    row = begin(spec, trial, attempt, placement, times)
    row.outcome = outcome_of(status, error)
    if note:
        row.notes.append(note)
    now = time.time()
    row.times.started_at = utc_time(started if started is not None else now)
    row.times.ended_at = utc_time(now)
    return row
