"""The rows gpu-grid writes, built in one place: the columns every row of an attempt has, and the
row of an attempt whose worker or node was lost (written by the driver, not by a worker)."""

from __future__ import annotations

import time
from typing import Any

from grid.results.schema import SCHEMA_VERSION
from grid.shared import Placement, Trial, TrialStatus, utc_time
from grid.spec.expand import canonical_config
from grid.spec.model import GridSpec
from grid.version import __version__


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
        "exclusive": trial.exclusive,
        **trial.tags,
        "timeout_s": spec.timeout_s,
        "memory_limit_mib": spec.memory_limit_mib,
        "host": placement.host if placement else None,
        "node_id": placement.node_id if placement else None,
        "workers": list(placement.workers) if placement else None,
        "gpu_ids": list(placement.gpu_ids) if placement else None,
        "grid_version": __version__,
    }


def lost_row(
    spec: GridSpec,
    trial: Trial,
    attempt: int,
    placement: Placement,
    error: BaseException,
    started: float,
    queued: float,
) -> dict[str, Any]:
    """An attempt whose worker died: infrastructure, not the trial's doing (re-run as a new attempt)."""
    row = base_row(spec, trial, attempt, placement)
    row.update(
        {
            "status": TrialStatus.LOST.value,
            "error_type": type(error).__name__,
            "error_tail": str(error)[-4000:],
            "started_at": utc_time(started),
            "ended_at": utc_time(time.time()),
            "queued_at": utc_time(queued),
        }
    )
    return row
