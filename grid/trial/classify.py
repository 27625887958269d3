"""How an attempt ended, from what the worker saw (exit, signal, timeout, memory budget) and
what the trial's processes recorded (an uncaught exception, an out-of-memory error)."""

from __future__ import annotations

from typing import Any

from grid.shared import TrialStatus
from grid.trial.isolate import ChildOutcome
from grid.trial.oom import is_oom


def classify(outcome: ChildOutcome, error: dict[str, Any] | None, log_tail: str) -> dict[str, Any]:
    """The attempt's status and evidence, from what the parent saw and what the trial's processes recorded."""
    if outcome.timed_out:
        return {
            "status": TrialStatus.TIMEOUT,
            "error_type": "Timeout",
            "error_tail": log_tail,
            "error_message": "still running at timeout_s; its whole process group was killed",
        }
    if outcome.over_budget:
        return {
            "status": TrialStatus.OOM,
            "error_type": "CpuMemoryBudgetExceeded",
            "error_tail": log_tail,
            "error_message": f"process tree RSS {outcome.peak_rss_mib:.0f} MiB went over memory_limit_mib",
        }
    if outcome.exit_code == 0:
        return {"status": TrialStatus.OK, "error_type": None, "error_tail": None, "error_message": None}
    if error is not None:
        oom = is_oom(error.get("type"), error.get("message"))
        return {
            "status": TrialStatus.OOM if oom else TrialStatus.ERROR,
            "error_type": error.get("type"),
            "error_message": error.get("message"),
            "error_tail": error.get("traceback") or log_tail,
        }
    if outcome.allocator_gave_up:
        return {
            "status": TrialStatus.OOM,
            "error_type": "OutOfMemory (allocator)",
            "error_tail": log_tail,
            "error_message": f"its allocator gave up on an allocation: {outcome.allocator_gave_up}; gpu-grid "
            f"ended the probe there, before the error reached the program",
        }
    if outcome.signal is not None:
        return {
            "status": TrialStatus.KILLED,
            "error_type": f"Signal.{outcome.signal}",
            "error_tail": log_tail,
            "error_message": f"the trial process was killed by {outcome.signal}",
        }
    if is_oom(None, log_tail):
        return {"status": TrialStatus.OOM, "error_type": "OutOfMemory (from log)", "error_tail": log_tail}
    return {
        "status": TrialStatus.ERROR,
        "error_type": "NonZeroExit",
        "error_tail": log_tail,
        "error_message": f"the trial process exited {outcome.exit_code}",
    }
