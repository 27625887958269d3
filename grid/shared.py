"""The types every stage of a sweep shares: a trial, where an attempt runs, a worker, an outcome.

spec -> `Trial` -> scheduler (`WorkerInfo`, `Placement`, `AttemptTimes`) -> trial process ->
row with a `TrialStatus` -> results. A failed trial is a record with a state, not a crash.
"""

from __future__ import annotations

import enum
import json
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

# A sweep's name: a folder of the results (`sweep=<name>`) and the start of its plots' file names.
SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def is_sweep_name(name: object) -> bool:
    return isinstance(name, str) and SWEEP_NAME.match(name) is not None


class TrialStatus(str, enum.Enum):
    OK = "ok"
    OOM = "oom"
    TIMEOUT = "timeout"
    ERROR = "error"
    KILLED = "killed"
    # The worker or node running the attempt was lost: infrastructure, not the trial's doing.
    LOST = "lost"

    def __str__(self) -> str:  # as the dataset writes it, in f-strings too
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def is_terminal(self) -> bool:
        """A terminal attempt is not re-run by a resumed sweep."""
        return self is not TrialStatus.LOST

    @property
    def is_retryable(self) -> bool:
        """What `--retry-failed` runs again (an OOM is a finding, not a failure to retry)."""
        return self in (TrialStatus.ERROR, TrialStatus.TIMEOUT, TrialStatus.KILLED, TrialStatus.LOST)


@dataclass(frozen=True)
class Trial:
    """One point of the grid: what runs (the workload), with which config, which repeat."""

    trial_id: str
    workload: str
    config: dict[str, Any]
    repeat: int
    index: int
    exclusive: bool = True  # owns its GPUs (timed); False: may share them by footprint (memory probes)
    tags: dict[str, Any] = field(default_factory=dict)  # columns of its rows that are not config (search_*)
    stop_after_steps: int | None = None  # a search's probe: end it once its memory is known (protocol)

    @property
    def gpus(self) -> int:
        return int(self.config.get("gpus", 1))

    def describe(self, axes: list[str]) -> str:
        parts = [f"{k}={json.dumps(self.config[k])}" for k in axes]
        return " ".join(parts) + (f" #{self.repeat}" if self.repeat else "")


@dataclass(frozen=True)
class WorkerInfo:
    """A worker that owns one GPU (or one CPU slot) for the sweep."""

    name: str
    node_id: str
    host: str
    gpu_ids: tuple[str, ...]  # () for a CPU slot
    memory_mib: float | None = None  # the card's memory (--gpu-memory-mib where given, else NVML)


@dataclass(frozen=True)
class Placement:
    """Where an attempt runs: the node, the workers holding its GPUs, and those GPUs' ids."""

    node_id: str
    host: str
    workers: tuple[str, ...]
    gpu_ids: tuple[str, ...]  # empty on CPU slots
    gpu_memory_mib: float | None = None  # each GPU's memory as its worker knows it (NVML, or --gpu-memory-mib)

    @property
    def on_gpu(self) -> bool:
        return bool(self.gpu_ids)


@dataclass
class AttemptTimes:
    queued_at: float
    dispatched_at: float = field(default_factory=time.time)


def hostname() -> str:
    return socket.gethostname()


def utc_time(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, tz=timezone.utc)
