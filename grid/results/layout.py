"""Where everything lives under a results root: the one place that names the store's paths.

    sweep=<name>/<trial_id>-<attempt>.parquet     one file per finished attempt
    sweep=<name>/compacted-<token>.parquet        rows merged by `grid compact` (compact.py)
    sweep=<name>/_logs/<trial_id>-<attempt>.log   the child's stdout and stderr
    sweep=<name>/_attempts/<trial_id>-<attempt>   an attempt number, claimed before it starts
    sweep=<name>/_columns/<metric>                 a metric column's type, fixed by its first value (metric_types.py)
    sweep=<name>/_trials/<trial_id>/              the trial's own folder (trialdir.py)
    sweep=<name>/_lease.json                      the driver running the sweep (lease.py), and
    sweep=<name>/_lease                           its lock file where the store is a filesystem
    _probes/<run>/<node>                          each node's proof that it can write (storage_check.py)

Readers take every `*.parquet` file of a sweep's folder as rows, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

ROWS = ".parquet"
_SWEEP = "sweep="
_COMPACTED = "compacted-"


@dataclass(frozen=True)
class Layout:
    root: str

    def sweep(self, sweep: str) -> str:
        return f"{self.root}/{_SWEEP}{sweep}"

    def row(self, sweep: str, trial_id: str, attempt: int) -> str:
        return f"{self.sweep(sweep)}/{trial_id}-{attempt}{ROWS}"

    def compacted(self, sweep: str, token: str) -> str:
        return f"{self.sweep(sweep)}/{_COMPACTED}{token}{ROWS}"

    def log(self, sweep: str, trial_id: str, attempt: int) -> str:
        return f"{self.sweep(sweep)}/_logs/{trial_id}-{attempt}.log"

    def attempts(self, sweep: str) -> str:
        return f"{self.sweep(sweep)}/_attempts"

    def columns(self, sweep: str) -> str:
        return f"{self.sweep(sweep)}/_columns"

    def trial_folder(self, sweep: str, trial_id: str) -> str:
        return f"{self.sweep(sweep)}/_trials/{trial_id}"

    def lease(self, sweep: str) -> str:
        return f"{self.sweep(sweep)}/_lease.json"

    def lease_lock(self, sweep: str) -> str:
        return f"{self.sweep(sweep)}/_lease"

    def probes(self, run: str) -> str:
        return f"{self.root}/_probes/{run}"


def sweep_of(folder_name: str) -> str | None:
    """The sweep a folder of the root holds (`sweep=<name>`), or None."""
    return folder_name[len(_SWEEP) :] if folder_name.startswith(_SWEEP) else None


def is_compacted(path: str) -> bool:
    """Whether a sweep's file holds merged rows (compact.py), not one attempt's."""
    return path.rsplit("/", 1)[-1].startswith(_COMPACTED)


def attempt_of(name: str) -> tuple[str, int] | None:
    """(trial_id, attempt) of a `<trial_id>-<attempt>` name, or None."""
    trial_id, _, attempt = name.rpartition("-")
    return (trial_id, int(attempt)) if attempt.isdigit() else None
