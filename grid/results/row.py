"""One row of the results dataset, typed: the record of one attempt of one trial.

A row is a `Row` of sub-records, each filled by the module that owns that measurement: the
attempt's identity and settings by the row builder (grid/trial/rows.py), how it ended by classify,
its process by isolate, its GPU by nvml, its epochs, framework and start by collect, its sharing by
gpulock and cotenants. Every column is declared once, here, on the field that holds it (`column`:
its Arrow type, meaning and role); grid/results/schema.py derives the dataset's schema from these
declarations. A trial's config and its own metrics extend a row by data: a column each.

Add a column: a field with `column(...)` in the sub-record of the module that measures it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from grid.shared import TrialStatus

# 2: user targets (target, command, workdir, script), open metric columns, notes, processes
# 3: stray_processes, containment, gpu_foreign_pids, gpu_wait_s
# 4: searches (search_*), packing (shared_with), energy
# 5: gpu_util_pct, gpu_compute_s, compile, compile_saved_s, start
# 6: trial_dir
# 7: `sweep` dictionary-encoded, matching the `sweep=` folders as readers' hive partitions
# 8: warm_modules, boot_s, finish_s; fit_calls null for a plain loop; search_low, search_high, search_predicted
# 9: conditions (issue 25): the GPU's state over the trial (gpu_sm_clock_mhz ... gpu_throttle_reasons) and the
#    steady window behind a timing (steady_window_s, steady_steps, window_short)
SCHEMA_VERSION = 9
ROLES = ("id", "outcome", "measure", "detail", "setting", "where", "time")

F, S, I32, I64, BOOL = pa.float64(), pa.string(), pa.int32(), pa.int64(), pa.bool_()
TS = pa.timestamp("ms", tz="UTC")
DICT = pa.dictionary(pa.int32(), pa.string())

MetricValue = float | str | bool | list[float] | None  # a trial's own value: one typed column each


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    meaning: str
    role: str  # id | outcome | measure | detail | setting | where | time
    goal: str | None = None  # a measure's direction: max or min
    reportable: bool = False  # a trial may set it by reporting a value of this name
    json_from: str | None = None  # a trial may set it by reporting a mapping of this name


def column(
    kind: pa.DataType,
    meaning: str,
    role: str,
    goal: str | None = None,
    *,
    reportable: bool = False,
    json_from: str | None = None,
    default: Any = None,
) -> Any:
    """A dataclass field that is a column of the dataset (its name is the field's)."""
    meta = {"column": (kind, meaning, role, goal, reportable, json_from)}
    if isinstance(default, list):
        return field(default_factory=list, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Identity:
    """Which attempt of which trial, and what it ran (the row builder)."""

    sweep: str = column(DICT, "the spec's name", "id", default="")
    trial_id: str = column(S, "hash of what runs, the config and the repeat index", "id", default="")
    attempt: int = column(I32, "0, 1, ...: a lost attempt is re-run as the next one", "id", default=0)
    repeat: int = column(I32, "which repeat of the config", "id", default=0)
    workload: str | None = column(S, "a built-in's name, or command / function", "id")
    target: str | None = column(S, "the command with its placeholders, or the function", "id")
    command: str | None = column(S, "the command as this attempt ran it, placeholders filled", "id")
    workdir: str | None = column(S, "where a command or function ran", "id")
    script: str | None = column(S, "the file(s) the target runs, as hashed into the trial id", "id")
    script_sha256: str | None = column(S, "SHA-256 of the script(s)", "id")
    config_json: str | None = column(S, "the trial's whole config (each value is also a column of its own)", "id")


@dataclass
class Outcome:
    """How it ended (classify, or the path that could not run it) and what the row wants known."""

    status: TrialStatus = column(S, "ok, oom, timeout, error, killed or lost", "outcome", default=TrialStatus.ERROR)
    exit_code: int | None = column(I32, "the trial process's exit code", "outcome")
    signal: str | None = column(S, "the signal that ended the process, by name", "outcome")
    error_type: str | None = column(S, "the error's qualified type", "outcome")
    error_message: str | None = column(S, "the error's own message", "outcome")
    error_tail: str | None = column(S, "the traceback or the log's last lines", "outcome")
    notes: list[str] = column(
        pa.list_(S), "what the row wants known: unmatched patterns, refused names...", "outcome", default=[]
    )


@dataclass
class Epochs:
    """The training loop's epochs and throughput, measured inside the trial (collect)."""

    epoch_times: list[float] | None = column(pa.list_(F), "seconds of every epoch", "detail", reportable=True)
    first_epoch_s: float | None = column(F, "the first epoch (includes compilation)", "measure", "min", reportable=True)
    steady_epoch_s: float | None = column(
        F, "median of the epochs after the first of each fit", "measure", "min", reportable=True
    )
    images_per_s: float | None = column(
        F, "images / training time of the steady epochs", "measure", "max", reportable=True
    )
    images_per_epoch: int | None = column(I64, "steps x batch of an epoch", "measure", reportable=True)
    global_batch: int | None = column(I64, "batch_size x gpus, or the batch the fit ran", "detail", reportable=True)
    import_s: float | None = column(F, "seconds importing the frameworks", "measure", "min", reportable=True)
    fit_calls: int | None = column(
        I32, "training runs of the primary process (Keras fit, Lightning fit, Hugging Face train)", "detail"
    )
    processes: int | None = column(I32, "Python processes of the trial that left a record", "detail")


@dataclass
class Metrics:
    """The trial's own values (History, `metrics:` patterns, reports): one column each, by data."""

    metric_goals_json: str | None = column(S, "each of the trial's own metrics -> max | min", "detail")
    series_json: str | None = column(S, "each metric's per-epoch values", "detail")
    values: dict[str, MetricValue] = field(default_factory=dict)


@dataclass
class Process:
    """The trial's process tree, seen from outside (isolate, contain)."""

    wall_s: float | None = column(F, "the trial process's wall time", "measure", "min")
    peak_rss_mib: float | None = column(F, "peak RSS of the whole process tree", "measure", "min")
    stray_processes: int | None = column(
        I32, "processes of the trial still alive when it ended, ended by gpu-grid", "outcome"
    )
    containment: str | None = column(
        S, "how the trial's processes were kept together: cgroup v2 or subreaper", "detail"
    )


@dataclass
class Settings:
    """What the spec allowed the attempt (the row builder)."""

    memory_limit_mib: int | None = column(I64, "the CPU RSS budget", "setting")
    exclusive: bool | None = column(BOOL, "whether the trial owned its GPUs", "setting")
    timeout_s: float | None = column(F, "the trial's timeout", "setting")


@dataclass
class GpuMemory:
    """GPU memory from outside the trial (nvml)."""

    gpu_mem_peak_mib: float | None = column(F, "NVML: the trial's processes, peak per GPU summed", "measure", "min")
    gpu_mem_peak_per_gpu_mib: list[float] | None = column(pa.list_(F), "NVML peak per GPU", "detail")
    gpu_device_mem_peak_mib: float | None = column(
        F, "NVML: device used minus the pre-launch baseline", "measure", "min"
    )
    gpu_mem_method: str | None = column(S, "how the GPU memory was attributed", "detail")
    gpu_foreign_pids: list[int] | None = column(
        pa.list_(I64), "other processes NVML saw on its GPUs during the trial", "outcome"
    )


@dataclass
class Sharing:
    """Whether its GPUs were its own (gpulock, cotenants)."""

    gpu_wait_s: float | None = column(F, "seconds it waited for its GPUs, held by a trial of another sweep", "detail")
    shared_with: list[str] | None = column(
        pa.list_(S), "trials that ran on its GPUs at the same time (its timings are shared)", "outcome"
    )


@dataclass
class FrameworkMemory:
    """The framework's own memory counters and what the cap meant, from inside (collect)."""

    framework_peak_mib: float | None = column(
        F, "the framework's own peak counter, summed over processes", "measure", "min", reportable=True
    )
    framework_mem_json: str | None = column(S, "the framework counters per device", "detail", json_from="framework_mem")
    memory_cap_method: str | None = column(S, "what memory_fraction meant for that backend", "detail", reportable=True)


@dataclass
class GpuFacts:
    """The GPU it ran on (nvml)."""

    gpu_name: str | None = column(S, "NVML's name of the GPU", "where")
    gpu_total_mib: float | None = column(F, "the GPU's memory (NVML; a fake GPU's, --gpu-memory-mib)", "where")
    driver_version: str | None = column(S, "the NVIDIA driver", "where")
    cuda_version: str | None = column(S, "CUDA of the driver", "where")


@dataclass
class Where:
    """Where it ran (the row builder, from the placement)."""

    host: str | None = column(S, "the host that ran it", "where")
    node_id: str | None = column(S, "the Ray node", "where")
    workers: list[str] | None = column(pa.list_(S), "the workers that held its GPUs", "where")
    gpu_ids: list[str] | None = column(pa.list_(S), "the GPUs (CUDA_VISIBLE_DEVICES)", "where")


@dataclass
class Search:
    """The search it is a step of, if any (the scheduler's search tags the trial)."""

    search_id: str | None = column(S, "the search the trial is a step of (one per combination of the other axes)", "id")
    search_axis: str | None = column(S, "the axis the search moves (memory_fraction or batch_size)", "id")
    search_step: int | None = column(I32, "its step in that search", "id")
    search_role: str | None = column(S, "reference (no cap), probe (looks for the boundary) or confirm (timed)", "id")
    search_low: float | None = column(F, "the searched range's low end", "id")
    search_high: float | None = column(F, "the searched range's high end", "id")
    search_predicted: float | None = column(
        F, "the boundary the search's memory model predicted when it chose this probe (null: bisection)", "detail"
    )


@dataclass
class Energy:
    """The GPUs' energy over the trial and per unit of work (nvml, attempt)."""

    energy_j: float | None = column(F, "joules its GPUs used during the trial (NVML)", "measure", "min")
    energy_per_epoch_j: float | None = column(
        F, "GPU energy of a steady epoch (mean; energy_method says)", "measure", "min"
    )
    joules_per_image: float | None = column(F, "GPU energy per image trained in the steady epochs", "measure", "min")
    energy_method: str | None = column(S, "NVML's total-energy counter, or power integrated over the samples", "detail")


@dataclass
class Start:
    """How the trial's process started and compiled (isolate, compilecache)."""

    start: str | None = column(
        S, "warm (forked from a parent that imported its framework) or cold (new interpreter)", "detail"
    )
    compile: str | None = column(
        S, "its first epoch: cold (compiled), cached (loaded), off, or null (none seen)", "detail"
    )
    compile_saved_s: float | None = column(
        F, "compile seconds the persistent cache saved (jax's own figure)", "measure"
    )
    warm_modules: list[str] | None = column(
        pa.list_(S), "a warm start's: the packages its parent had imported before the fork", "detail"
    )
    boot_s: float | None = column(
        F, "gpu-grid's own seconds starting the trial's process (its bootstrap: caps, hooks, record)", "measure"
    )
    finish_s: float | None = column(
        F, "gpu-grid's own seconds from the trial's end to its row (records, log, NVML, the row's file)", "measure"
    )


@dataclass
class GpuUse:
    """How much of the trial its GPUs computed (nvml)."""

    gpu_util_pct: float | None = column(
        F, "mean NVML utilisation of its GPUs: share of the trial a kernel ran", "measure"
    )
    gpu_compute_s: float | None = column(
        F, "GPU-seconds with a kernel running (utilisation x time, summed over GPUs)", "measure"
    )


@dataclass
class Framework:
    """The framework and data that ran, from inside (collect, or the trial's own report)."""

    framework: str | None = column(S, "the framework that ran", "detail", reportable=True)
    framework_version: str | None = column(S, "its version", "detail", reportable=True)
    versions_json: str | None = column(S, "versions of the packages in the trial", "detail", json_from="versions")
    data: str | None = column(S, "cifar10, synthetic, ...", "detail", reportable=True)
    data_note: str | None = column(S, "what the data was", "detail", reportable=True)
    parallelism: str | None = column(S, "how several devices were used", "detail", reportable=True)


@dataclass
class Files:
    """What the attempt was given and left (launch, the store, the trial folder)."""

    child_env_json: str | None = column(
        S, "the variables gpu-grid set for the trial (values from the spec's env: masked)", "detail"
    )
    log_path: str | None = column(S, "the trial's output", "detail")
    trial_dir: str | None = column(S, "the trial's own folder (GRID_TRIAL_DIR), if it holds files", "detail")


@dataclass
class Times:
    """When it was queued, dispatched, started and ended (UTC)."""

    queued_at: datetime | None = column(TS, "when the trial was queued", "time")
    dispatched_at: datetime | None = column(TS, "when a worker got it", "time")
    started_at: datetime | None = column(TS, "when its process started", "time")
    ended_at: datetime | None = column(TS, "when its process ended", "time")


# -- issue 25: what a timing was measured under (one sub-record: the GPU's state and the steady window)
@dataclass
class Conditions:
    """The GPU's state over the trial (nvml: every sample) and the window its timings stand on (collect)."""

    gpu_sm_clock_mhz: float | None = column(F, "median SM clock over the trial's NVML samples", "detail")
    gpu_sm_clock_min_mhz: float | None = column(F, "lowest SM clock sampled", "detail")
    gpu_mem_clock_mhz: float | None = column(F, "median memory clock over the samples", "detail")
    gpu_temp_max_c: float | None = column(F, "hottest GPU temperature sampled (C)", "detail")
    gpu_power_limit_w: float | None = column(F, "the enforced power limit (W)", "detail")
    gpu_throttle_reasons: list[str] | None = column(
        pa.list_(S), "clock throttle reasons NVML gave in any sample (sw_power_cap, hw_slowdown, ...)", "detail"
    )
    gpu_throttled_share: float | None = column(
        F, "share of the samples slowed by power, heat or the hardware (not idle, not application clocks)", "detail"
    )
    steady_window_s: float | None = column(
        F, "seconds of steady epochs (after the first of each fit) its timings stand on", "detail"
    )
    steady_steps: int | None = column(I64, "training steps in those epochs (null: not counted)", "detail")
    window_short: bool | None = column(
        BOOL, "the steady window is too short to time (under 1 s or 20 steps: results/window.py)", "outcome"
    )


@dataclass
class Versions:
    """Which gpu-grid and which schema wrote the row (stamped when the row is built)."""

    schema_version: int = column(I32, "the schema version the row was written in", "id", default=SCHEMA_VERSION)
    grid_version: str | None = column(S, "gpu-grid's version", "where")


# The sub-records of a row, in column order: the Row attribute that holds each.
PARTS: dict[str, type] = {
    "versions": Versions,
    "identity": Identity,
    "outcome": Outcome,
    "epochs": Epochs,
    "metrics": Metrics,
    "process": Process,
    "settings": Settings,
    "gpu_memory": GpuMemory,
    "sharing": Sharing,
    "framework_memory": FrameworkMemory,
    "gpu": GpuFacts,
    "where": Where,
    "search": Search,
    "energy": Energy,
    "start": Start,
    "gpu_use": GpuUse,
    "framework": Framework,
    "files": Files,
    "times": Times,
    "conditions": Conditions,
}


def _columns() -> tuple[tuple[Column, str, str], ...]:
    out = []
    for part, record in PARTS.items():
        for f in dataclasses.fields(record):
            if "column" not in f.metadata:
                continue
            kind, meaning, role, goal, reportable, json_from = f.metadata["column"]
            assert role in ROLES, f"{record.__name__}.{f.name}: role {role!r}"
            out.append((Column(f.name, kind, meaning, role, goal, reportable, json_from), part, f.name))
    return tuple(out)


_DECLARED = _columns()
COLUMNS: tuple[Column, ...] = tuple(c for c, _, _ in _DECLARED)
PLACE: dict[str, tuple[str, str]] = {c.name: (part, attr) for c, part, attr in _DECLARED}  # column -> where it lives


@dataclass
class Row:
    """The record of one attempt: sub-records of declared columns, the trial's config, its metrics."""

    identity: Identity
    config: dict[str, Any] = field(default_factory=dict)
    versions: Versions = field(default_factory=Versions)
    outcome: Outcome = field(default_factory=Outcome)
    epochs: Epochs = field(default_factory=Epochs)
    metrics: Metrics = field(default_factory=Metrics)
    process: Process = field(default_factory=Process)
    settings: Settings = field(default_factory=Settings)
    gpu_memory: GpuMemory = field(default_factory=GpuMemory)
    sharing: Sharing = field(default_factory=Sharing)
    framework_memory: FrameworkMemory = field(default_factory=FrameworkMemory)
    gpu: GpuFacts = field(default_factory=GpuFacts)
    where: Where = field(default_factory=Where)
    search: Search = field(default_factory=Search)
    energy: Energy = field(default_factory=Energy)
    start: Start = field(default_factory=Start)
    gpu_use: GpuUse = field(default_factory=GpuUse)
    framework: Framework = field(default_factory=Framework)
    files: Files = field(default_factory=Files)
    times: Times = field(default_factory=Times)
    conditions: Conditions = field(default_factory=Conditions)

    # -- the few fields everyone asks for
    @property
    def status(self) -> TrialStatus:
        return self.outcome.status

    @property
    def notes(self) -> list[str]:
        return self.outcome.notes

    @property
    def trial_id(self) -> str:
        return self.identity.trial_id

    @property
    def attempt(self) -> int:
        return self.identity.attempt

    @property
    def sweep(self) -> str:
        return self.identity.sweep

    # -- by column name (a reported value, a pattern named after a measurement)
    def get(self, name: str) -> Any:
        """A declared column's value by its name."""
        part, attr = PLACE[name]
        return getattr(getattr(self, part), attr)

    def set(self, name: str, value: Any) -> None:
        """Set a declared column by its name."""
        part, attr = PLACE[name]
        setattr(getattr(self, part), attr, value)

    def record(self) -> dict[str, Any]:
        """The row as the dataset holds it: one value per column (config and metrics included)."""
        out: dict[str, Any] = {}
        for name, (part, attr) in PLACE.items():
            out[name] = getattr(getattr(self, part), attr)
        out["status"] = self.outcome.status.value
        out["notes"] = list(self.outcome.notes) or None
        for name, value in self.config.items():
            out.setdefault(name, value)
        for name, value in self.metrics.values.items():
            out.setdefault(name, value)
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Row:
        """A row read back from the dataset: declared columns into their sub-records, the config
        from `config_json` (each value also a column), every other column a metric."""
        row = cls(Identity())
        config = json.loads(record["config_json"]) if record.get("config_json") else {}
        for name, value in record.items():
            if name in PLACE:
                row.set(name, value)
            elif name in config:
                row.config[name] = value
            else:
                row.metrics.values[name] = value
        row.outcome.status = TrialStatus(record.get("status") or TrialStatus.ERROR.value)
        row.outcome.notes = list(record.get("notes") or [])
        return row
