"""One attempt of one trial, start to finish: its process (grid/launch.py) in isolation, what the
trial's processes recorded (grid/collect.py), the `metrics:` patterns over its output, the
classification, and the row written to the results dataset.

Called by a `GpuWorker` actor (grid/worker.py) or a local slot; never imports a framework or tasks/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from grid import __version__, collect
from grid.expand import Trial, canonical_config
from grid.isolate import ChildOutcome, run_child
from grid.launch import Launch, Placement, prepare
from grid.metrics import known_goal, scan
from grid.oom import is_oom
from grid.results import BASE_NAMES, SCHEMA_VERSION, ResultStore
from grid.spec import GridSpec
from grid.states import TrialStatus

__all__ = ["AttemptTimes", "Placement", "base_row", "classify", "hostname", "run_attempt", "utc_time"]
_LOG_TAIL_BYTES = 4000


@dataclass
class AttemptTimes:
    queued_at: float
    dispatched_at: float = field(default_factory=time.time)


def _log_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def classify(outcome: ChildOutcome, error: dict[str, Any] | None, log_tail: str) -> dict[str, Any]:
    """The attempt's status and evidence, from what the parent saw and what the trial's processes recorded."""
    if outcome.timed_out:
        return {"status": TrialStatus.TIMEOUT, "error_type": "Timeout", "error_tail": log_tail,
                "error_message": "still running at timeout_s; its whole process group was killed"}
    if outcome.over_budget:
        return {"status": TrialStatus.OOM, "error_type": "CpuMemoryBudgetExceeded", "error_tail": log_tail,
                "error_message": f"process tree RSS {outcome.peak_rss_mib:.0f} MiB went over memory_limit_mib"}
    if outcome.exit_code == 0:
        return {"status": TrialStatus.OK, "error_type": None, "error_tail": None, "error_message": None}
    if error is not None:
        oom = is_oom(error.get("type"), error.get("message"))
        return {"status": TrialStatus.OOM if oom else TrialStatus.ERROR, "error_type": error.get("type"),
                "error_message": error.get("message"), "error_tail": error.get("traceback") or log_tail}
    if outcome.signal is not None:
        return {"status": TrialStatus.KILLED, "error_type": f"Signal.{outcome.signal}", "error_tail": log_tail,
                "error_message": f"the trial process was killed by {outcome.signal}"}
    if is_oom(None, log_tail):
        return {"status": TrialStatus.OOM, "error_type": "OutOfMemory (from log)", "error_tail": log_tail}
    return {"status": TrialStatus.ERROR, "error_type": "NonZeroExit", "error_tail": log_tail,
            "error_message": f"the trial process exited {outcome.exit_code}"}


def utc_time(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc)


def base_row(spec: GridSpec, trial: Trial, attempt: int, placement: Placement | None) -> dict[str, Any]:
    """The columns every row has, whatever happened to the attempt."""
    return {
        "schema_version": SCHEMA_VERSION,
        "sweep": spec.name,
        "trial_id": trial.trial_id,
        "attempt": attempt,
        "repeat": trial.repeat,
        "workload": trial.workload,
        "target": spec.workload_def.target_for(trial.config.get("backend")).text(),
        "workdir": None if spec.workload_def.builtin else spec.workdir,
        "script": ", ".join(spec.script.paths) or None,
        "script_sha256": spec.script.sha256,
        "config_json": canonical_config(trial.config),
        **trial.config,
        "exclusive": spec.exclusive,
        "timeout_s": spec.timeout_s,
        "memory_limit_mib": spec.memory_limit_mib,
        "host": placement.host if placement else None,
        "node_id": placement.node_id if placement else None,
        "workers": list(placement.workers) if placement else None,
        "gpu_ids": list(placement.gpu_ids) if placement else None,
        "grid_version": __version__,
    }


def measured_fields(spec: GridSpec, trial: Trial, records: list[dict], log_file: str, offset: int) -> dict[str, Any]:
    """What the trial measured and reported, as row columns, with its notes and metric directions.
    The `metrics:` patterns read the output from `offset` on (this attempt's own lines)."""
    fields, notes = collect.measurements(records, trial.config)
    found = scan(log_file, offset, spec.metrics, len(fields.get("epoch_times") or []) or trial.config.get("epochs"))
    history, series = collect.history(records)
    values = {**history, **found.values, **collect.reported(records)}
    notes += found.notes
    taken = (BASE_NAMES | set(trial.config)) - collect.MEASURED
    metrics = collect.apply_values(fields, values, taken, notes)
    series.update(found.series)
    declared = {name: m.goal for name, m in spec.metrics.items()}

    def rank(name: str) -> int:  # the spec's own metrics first, then reported ones, then History's
        return 0 if name in declared or name in found.values else 1 if name not in history else 2

    goals = {name: declared.get(name) or known_goal(name) for name in sorted(metrics, key=rank)}
    fields.update(series_json=json.dumps(series, sort_keys=True) if series else None,
                  metric_goals_json=json.dumps(goals) if goals else None, notes=notes)
    return fields


def _start(launch: Launch, spec: GridSpec, trial: Trial, attempt: int, placement: Placement,
           log_file: str, samplers: list) -> tuple[ChildOutcome | None, int]:
    """Run the attempt's process; also where its own output starts in the log."""
    with open(log_file, "ab") as log:
        log.write(f"[gpu-grid] trial {trial.trial_id} attempt {attempt} on {placement.host} "
                  f"GPUs {list(placement.gpu_ids) or 'none (CPU slot)'} in {launch.cwd}\n"
                  f"[gpu-grid] {launch.command}\n".encode())
        if launch.missing:
            log.write(f"[gpu-grid] cannot start: {launch.missing}\n".encode())
            return None, log.tell()
        offset = log.tell()
    return run_child(launch.argv, env=launch.env, cwd=launch.cwd, log_path=log_file, timeout_s=spec.timeout_s,
                     samplers=samplers, interval_s=spec.sample_interval_ms / 1000,
                     memory_limit_mib=spec.memory_limit_mib), offset


def run_attempt(spec: GridSpec, trial: Trial, attempt: int, placement: Placement, store: ResultStore,
                times: AttemptTimes, samplers: list | None = None, gpu_info: dict | None = None) -> dict[str, Any]:
    """Run one attempt in an isolated process tree and write its row. Returns the row."""
    scratch = tempfile.mkdtemp(prefix=f"gpu-grid-{trial.trial_id}-{attempt}-")
    try:
        launch = prepare(spec, trial, attempt, placement, scratch, gpu_info)
        log_file = store.local_log_file(spec.name, trial.trial_id, attempt)
        outcome, offset = _start(launch, spec, trial, attempt, placement, log_file, samplers or [])
        records = collect.read_records(os.path.join(scratch, "records"))
        measured = measured_fields(spec, trial, records, log_file, offset)
        tail = _log_tail(log_file)
        log_path = store.commit_log(log_file, spec.name, trial.trial_id, attempt)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    row = base_row(spec, trial, attempt, placement)
    row.update(gpu_info or {})
    for sampler in samplers or []:
        row.update(sampler.columns())
    row.update({"child_env_json": json.dumps(launch.explicit, sort_keys=True), "log_path": log_path,
                "command": launch.command, "queued_at": utc_time(times.queued_at),
                "dispatched_at": utc_time(times.dispatched_at)})
    row.update(measured)
    error = collect.first_error(records)
    if outcome is None:
        kind, _, message = (launch.missing or "").partition(": ")
        row.update({"status": TrialStatus.ERROR.value, "error_type": kind, "error_message": message,
                    "error_tail": message})
        row["started_at"] = row["ended_at"] = utc_time(time.time())
    else:
        verdict = classify(outcome, error, tail)
        if verdict["status"] is TrialStatus.OK and error:
            row["notes"].append(f"a process of the trial raised {error['type']}: {error['message'][:200]} "
                                f"(the trial exited 0)")
        row.update({"status": verdict["status"].value, "error_type": verdict["error_type"],
                    "error_tail": verdict["error_tail"], "error_message": verdict.get("error_message"),
                    "exit_code": outcome.exit_code, "signal": outcome.signal, "wall_s": outcome.wall_s,
                    "peak_rss_mib": outcome.peak_rss_mib, "started_at": utc_time(outcome.started_at),
                    "ended_at": utc_time(outcome.ended_at)})
    row["notes"] = row["notes"] or None
    store.write_row(row, spec.param_kinds())
    return row


def hostname() -> str:
    return socket.gethostname()
