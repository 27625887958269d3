"""One attempt of one trial, start to finish: trial JSON, explicit environment, child process,
classification, and the row written to the results dataset.

Called by a `GpuWorker` actor (grid/worker.py) or a local slot; never imports a framework.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import tasks
from grid import __version__
from grid.expand import Trial, canonical_config
from grid.isolate import ChildOutcome, run_child
from grid.results import SCHEMA_VERSION, ResultStore
from grid.spec import GridSpec
from grid.states import TrialStatus
from tasks import FRAMEWORK_BACKENDS
from tasks.oom import is_oom

TASKS_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(tasks.__file__)))
# Variables the worker sets itself, or that Ray sets for its own processes and a trial must not inherit.
_NOT_INHERITED = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "KERAS_BACKEND", "OMP_NUM_THREADS", "PYTHONPATH")
_LOG_TAIL_BYTES = 4000


@dataclass(frozen=True)
class Placement:
    """Where an attempt runs: the node, the workers holding its GPUs, and those GPUs' ids."""

    node_id: str
    host: str
    workers: tuple[str, ...]
    gpu_ids: tuple[str, ...]  # empty on CPU slots

    @property
    def on_gpu(self) -> bool:
        return bool(self.gpu_ids)


@dataclass
class AttemptTimes:
    queued_at: float
    dispatched_at: float = field(default_factory=time.time)


def interpreter_for(spec: GridSpec, backend: str) -> str:
    """The Python that runs this backend's trials: the spec's `interpreters`, else this one."""
    path = spec.interpreters.get(backend)
    if path is None and backend == "mxnet":
        path = os.path.join(TASKS_ROOT, ".venv-mxnet", "bin", "python")
    if path is None:
        return sys.executable
    return path if os.path.isabs(path) else os.path.join(TASKS_ROOT, path)


def child_env(spec: GridSpec, trial: Trial, placement: Placement) -> tuple[dict[str, str], dict[str, str]]:
    """The child's whole environment, and the part gpu-grid set explicitly (recorded in the row)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k not in _NOT_INHERITED}
    explicit = {
        "CUDA_VISIBLE_DEVICES": ",".join(placement.gpu_ids),
        "PYTHONPATH": os.pathsep.join(p for p in (TASKS_ROOT, os.environ.get("PYTHONPATH", "")) if p),
        "PYTHONUNBUFFERED": "1",
        "GPU_GRID_TRIAL_ID": trial.trial_id,
    }
    if placement.on_gpu:
        explicit["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's device numbering = NVML's = Ray's
    backend = trial.config.get("backend")
    if backend in FRAMEWORK_BACKENDS:
        explicit["KERAS_BACKEND"] = backend
    explicit.update(spec.env)
    return {**inherited, **explicit}, explicit


def _log_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _read_result(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def classify(outcome: ChildOutcome, result: dict[str, Any] | None, log_tail: str) -> dict[str, Any]:
    """The attempt's status and evidence, from what the parent saw and what the child wrote."""
    if outcome.timed_out:
        return {"status": TrialStatus.TIMEOUT, "error_type": "Timeout", "error_tail": log_tail,
                "error_message": "still running at timeout_s; its whole process group was killed"}
    if outcome.over_budget:
        return {"status": TrialStatus.OOM, "error_type": "CpuMemoryBudgetExceeded", "error_tail": log_tail,
                "error_message": f"process tree RSS {outcome.peak_rss_mib:.0f} MiB went over memory_limit_mib"}
    if result is not None:
        status = TrialStatus(result.get("status", "error"))
        if status is TrialStatus.OK and outcome.exit_code != 0:
            return {"status": TrialStatus.ERROR, "error_type": "NonZeroExit",
                    "error_tail": f"result says ok but the process exited {outcome.exit_code or outcome.signal}\n{log_tail}"}
        tail = result.get("error_tail") or (log_tail if status.is_failure else None)
        return {"status": status, "error_type": result.get("error_type"), "error_tail": tail,
                "error_message": result.get("error_message")}
    if outcome.signal is not None:
        return {"status": TrialStatus.KILLED, "error_type": f"Signal.{outcome.signal}", "error_tail": log_tail,
                "error_message": f"the trial process was killed by {outcome.signal}"}
    if is_oom(None, log_tail):
        return {"status": TrialStatus.OOM, "error_type": "OutOfMemory (from log)", "error_tail": log_tail}
    return {"status": TrialStatus.ERROR, "error_type": "NoResult",
            "error_tail": f"exited {outcome.exit_code} without writing a result\n{log_tail}"}


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


_RESULT_COLUMNS = ("epoch_times", "first_epoch_s", "steady_epoch_s", "images_per_s", "import_s", "framework",
                   "framework_version", "data", "data_note", "images_per_epoch", "parallelism", "framework_peak_mib",
                   "memory_cap_method", "global_batch")


def run_attempt(spec: GridSpec, trial: Trial, attempt: int, placement: Placement, store: ResultStore,
                times: AttemptTimes, samplers: list | None = None, gpu_info: dict | None = None) -> dict[str, Any]:
    """Run one attempt in an isolated child and write its row. Returns the row."""
    scratch = tempfile.mkdtemp(prefix=f"gpu-grid-{trial.trial_id}-{attempt}-")
    try:
        result_path = os.path.join(scratch, "result.json")
        trial_path = os.path.join(scratch, "trial.json")
        with open(trial_path, "w") as f:
            json.dump({"trial_id": trial.trial_id, "attempt": attempt, "sweep": spec.name,
                       "workload": trial.workload, "config": trial.config, "repeat": trial.repeat,
                       "gpu_ids": list(placement.gpu_ids), "result_path": result_path}, f)
        env, explicit = child_env(spec, trial, placement)
        backend = trial.config.get("backend", "none")
        module = tasks.WORKLOADS[trial.workload].module_for(backend)
        argv = [interpreter_for(spec, backend), "-m", module, trial_path]
        log_file = store.local_log_file(spec.name, trial.trial_id, attempt)
        with open(log_file, "ab") as log:
            log.write(f"[gpu-grid] trial {trial.trial_id} attempt {attempt} on {placement.host} "
                      f"GPUs {list(placement.gpu_ids) or 'none (CPU slot)'}: {' '.join(argv)}\n".encode())
        if not os.path.exists(argv[0]):
            outcome = None
        else:
            outcome = run_child(argv, env=env, cwd=scratch, log_path=log_file, timeout_s=spec.timeout_s,
                                samplers=samplers or [], interval_s=spec.sample_interval_ms / 1000,
                                memory_limit_mib=spec.memory_limit_mib)
        result = _read_result(result_path)
        tail = _log_tail(log_file)
        log_path = store.commit_log(log_file, spec.name, trial.trial_id, attempt)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    row = base_row(spec, trial, attempt, placement)
    row.update(gpu_info or {})
    for sampler in samplers or []:
        row.update(sampler.columns())
    row.update({"child_env_json": json.dumps(explicit, sort_keys=True), "log_path": log_path,
                "queued_at": utc_time(times.queued_at), "dispatched_at": utc_time(times.dispatched_at)})
    if outcome is None:
        row.update({"status": TrialStatus.ERROR.value, "error_type": "InterpreterNotFound",
                    "error_tail": f"no interpreter at {argv[0]} for backend {trial.config.get('backend')!r}; "
                                  f"build it (make mxnet-env) or set interpreters.<backend> in the spec"})
        row["started_at"] = row["ended_at"] = utc_time(time.time())
    else:
        verdict = classify(outcome, result, tail)
        row.update({"status": verdict["status"].value, "error_type": verdict["error_type"],
                    "error_tail": verdict["error_tail"], "error_message": verdict.get("error_message"), "exit_code": outcome.exit_code, "signal": outcome.signal,
                    "wall_s": outcome.wall_s, "peak_rss_mib": outcome.peak_rss_mib,
                    "started_at": utc_time(outcome.started_at), "ended_at": utc_time(outcome.ended_at)})
    if result:
        row.update({k: result.get(k) for k in _RESULT_COLUMNS if k in result})
        if result.get("versions"):
            row["versions_json"] = json.dumps(result["versions"], sort_keys=True)
        if result.get("framework_mem"):
            row["framework_mem_json"] = json.dumps(result["framework_mem"], sort_keys=True)
    store.write_row(row)
    return row


def hostname() -> str:
    return socket.gethostname()
