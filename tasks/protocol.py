"""The child side of the trial protocol: trial JSON in, one result JSON out, written atomically.

A workload module defines `run(trial: dict) -> dict` and ends with
`if __name__ == "__main__": protocol.main(run)`. The trial JSON holds `trial_id`, `attempt`,
`workload`, `config` (every parameter resolved) and `result_path`. Whatever `run` returns is
merged into the result; an exception becomes `status: error` (or `oom`) with its type, message
and traceback tail, and the process exits 1.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import traceback
from typing import Any, Callable

from tasks.oom import is_oom

RESULT_VERSION = 1

# What a workload already knows when it fails part-way (framework, versions, memory cap): kept in
# the result even when `run` raises, so an OOM row still says what "memory_fraction" meant.
known: dict[str, Any] = {}


def record(**fields: Any) -> None:
    known.update(fields)


def write_json_atomic(path: str, data: dict) -> None:
    """Write to a temporary name in the same directory, then rename: readers never see half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def epoch_summary(epoch_times: list[float], images: int) -> dict[str, Any]:
    """First epoch (includes compilation) apart from the median of the steady ones."""
    if not epoch_times:
        return {"epoch_times": [], "first_epoch_s": None, "steady_epoch_s": None, "images_per_s": None}
    steady = statistics.median(epoch_times[1:]) if len(epoch_times) > 1 else None
    basis = steady if steady else epoch_times[0]
    return {
        "epoch_times": [float(t) for t in epoch_times],
        "first_epoch_s": float(epoch_times[0]),
        "steady_epoch_s": None if steady is None else float(steady),
        "images_per_s": float(images / basis) if basis else None,
    }


def failure(exc: BaseException) -> dict[str, Any]:
    """A caught exception as result fields; OOM is recognised on every backend."""
    error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
    message = str(exc)
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "status": "oom" if is_oom(error_type, message) else "error",
        "error_type": error_type,
        "error_message": message[-4000:],
        "error_tail": tb[-4000:],
    }


def main(run: Callable[[dict], dict], argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit(f"usage: python -m {run.__module__} TRIAL_JSON")
    with open(argv[0]) as f:
        trial = json.load(f)
    result_path = trial.get("result_path") or os.path.join(os.path.dirname(os.path.abspath(argv[0])), "result.json")
    started = time.time()
    result: dict[str, Any] = {
        "result_version": RESULT_VERSION,
        "trial_id": trial.get("trial_id"),
        "attempt": trial.get("attempt"),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "started_at": started,
    }
    code = 0
    try:
        result.update(run(trial))
        result.setdefault("status", "ok")
    except BaseException as exc:  # noqa: BLE001 - every failure becomes data
        result.update(known)
        result.update(failure(exc))
        code = 1
        traceback.print_exc()
    result["ended_at"] = time.time()
    write_json_atomic(result_path, result)
    sys.stdout.flush()
    sys.exit(code)
