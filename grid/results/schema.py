"""The one schema of a results row: every column gpu-grid writes, declared once with its type,
its meaning and its role. The writer types files from it, readers and reports pick their
measurements from it, `grid compare` takes a measurement's direction from it, and a trial's
reported values land in the columns it marks as reportable. A trial's own metrics (History,
`metrics:` patterns, reports) and its config extend a row by data: a column each, typed by value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from grid.errors import ResultsError

# 2: user targets (target, command, workdir, script), open metric columns, notes, processes
# 3: stray_processes, containment, gpu_foreign_pids, gpu_wait_s
# 4: searches (search_*), packing (shared_with), energy
# 5: gpu_util_pct, gpu_compute_s, compile, compile_saved_s, start
# 6: trial_dir
SCHEMA_VERSION = 6
GOALS = ("max", "min")

_F, _S, _I32, _I64 = pa.float64(), pa.string(), pa.int32(), pa.int64()
_TS = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    meaning: str
    role: str  # id | outcome | measure | detail | setting | where | time
    goal: str | None = None  # a measure's direction: max or min
    reportable: bool = False  # a trial may set it by reporting a value of this name
    json_from: str | None = None  # a trial may set it by reporting a mapping of this name


COLUMNS: tuple[Column, ...] = (
    # which attempt of which trial, and what it ran
    Column("schema_version", _I32, "the schema version the row was written in", "id"),
    Column("sweep", _S, "the spec's name", "id"),
    Column("trial_id", _S, "hash of what runs, the config and the repeat index", "id"),
    Column("attempt", _I32, "0, 1, ...: a lost attempt is re-run as the next one", "id"),
    Column("repeat", _I32, "which repeat of the config", "id"),
    Column("workload", _S, "a built-in's name, or command / function", "id"),
    Column("target", _S, "the command with its placeholders, or the function", "id"),
    Column("command", _S, "the command as this attempt ran it, placeholders filled", "id"),
    Column("workdir", _S, "where a command or function ran", "id"),
    Column("script", _S, "the file(s) the target runs, as hashed into the trial id", "id"),
    Column("script_sha256", _S, "SHA-256 of the script(s)", "id"),
    Column("config_json", _S, "the trial's whole config (each value is also a column of its own)", "id"),
    # how it ended
    Column("status", _S, "ok, oom, timeout, error, killed or lost", "outcome"),
    Column("exit_code", _I32, "the trial process's exit code", "outcome"),
    Column("signal", _S, "the signal that ended the process, by name", "outcome"),
    Column("error_type", _S, "the error's qualified type", "outcome"),
    Column("error_message", _S, "the error's own message", "outcome"),
    Column("error_tail", _S, "the traceback or the log's last lines", "outcome"),
    Column("notes", pa.list_(_S), "what the row wants known: unmatched patterns, refused names...", "outcome"),
    # measurements
    Column("epoch_times", pa.list_(_F), "seconds of every epoch", "detail", reportable=True),
    Column("first_epoch_s", _F, "the first epoch (includes compilation)", "measure", "min", reportable=True),
    Column("steady_epoch_s", _F, "median of the epochs after the first of each fit", "measure", "min", reportable=True),
    Column("images_per_s", _F, "images / training time of the steady epochs", "measure", "max", reportable=True),
    Column("images_per_epoch", _I64, "steps x batch of an epoch", "measure", reportable=True),
    Column("global_batch", _I64, "batch_size x gpus, or the batch the fit ran", "detail", reportable=True),
    Column("import_s", _F, "seconds importing the frameworks", "measure", "min", reportable=True),
    Column("fit_calls", _I32, "Keras fit calls of the primary process", "detail"),
    Column("processes", _I32, "Python processes of the trial that left a record", "detail"),
    Column("metric_goals_json", _S, "each of the trial's own metrics -> max | min", "detail"),
    Column("series_json", _S, "each metric's per-epoch values", "detail"),
    Column("wall_s", _F, "the trial process's wall time", "measure", "min"),
    Column("peak_rss_mib", _F, "peak RSS of the whole process tree", "measure", "min"),
    Column("memory_limit_mib", _I64, "the CPU RSS budget", "setting"),
    Column("gpu_mem_peak_mib", _F, "NVML: the trial's processes, peak per GPU summed", "measure", "min"),
    Column("gpu_mem_peak_per_gpu_mib", pa.list_(_F), "NVML peak per GPU", "detail"),
    Column("gpu_device_mem_peak_mib", _F, "NVML: device used minus the pre-launch baseline", "measure", "min"),
    Column("gpu_mem_method", _S, "how the GPU memory was attributed", "detail"),
    Column("gpu_foreign_pids", pa.list_(_I64), "other processes NVML saw on its GPUs during the trial", "outcome"),
    Column("gpu_wait_s", _F, "seconds it waited for its GPUs, held by a trial of another sweep", "detail"),
    Column("stray_processes", _I32, "processes of the trial still alive when it ended, ended by gpu-grid", "outcome"),
    Column("containment", _S, "how the trial's processes were kept together: cgroup v2 or subreaper", "detail"),
    Column(
        "framework_peak_mib",
        _F,
        "the framework's own peak counter, summed over processes",
        "measure",
        "min",
        reportable=True,
    ),
    Column("framework_mem_json", _S, "the framework counters per device", "detail", json_from="framework_mem"),
    Column("memory_cap_method", _S, "what memory_fraction meant for that backend", "detail", reportable=True),
    # where and with what it ran
    Column("gpu_name", _S, "NVML's name of the GPU", "where"),
    Column("gpu_total_mib", _F, "the GPU's memory", "where"),
    Column("driver_version", _S, "the NVIDIA driver", "where"),
    Column("cuda_version", _S, "CUDA of the driver", "where"),
    Column("host", _S, "the host that ran it", "where"),
    Column("node_id", _S, "the Ray node", "where"),
    Column("workers", pa.list_(_S), "the workers that held its GPUs", "where"),
    Column("gpu_ids", pa.list_(_S), "the GPUs (CUDA_VISIBLE_DEVICES)", "where"),
    Column("exclusive", pa.bool_(), "whether the trial owned its GPUs", "setting"),
    Column(
        "shared_with", pa.list_(_S), "trials that ran on its GPUs at the same time (its timings are shared)", "outcome"
    ),
    Column("search_id", _S, "the search the trial is a step of (one per combination of the other axes)", "id"),
    Column("search_axis", _S, "the axis the search moves (memory_fraction or batch_size)", "id"),
    Column("search_step", _I32, "its step in that search", "id"),
    Column("search_role", _S, "reference (no cap), probe (looks for the boundary) or confirm (timed)", "id"),
    Column("energy_j", _F, "joules its GPUs used during the trial (NVML)", "measure", "min"),
    Column("energy_per_epoch_j", _F, "GPU energy of a steady epoch (mean; energy_method says)", "measure", "min"),
    Column("joules_per_image", _F, "GPU energy per image trained in the steady epochs", "measure", "min"),
    Column("start", _S, "warm (forked from a parent that imported its framework) or cold (new interpreter)", "detail"),
    Column("compile", _S, "its first epoch: cold (compiled), cached (loaded), off, or null (none seen)", "detail"),
    Column("compile_saved_s", _F, "compile seconds the persistent cache saved (jax's own figure)", "measure"),
    Column("gpu_util_pct", _F, "mean NVML utilisation of its GPUs: share of the trial a kernel ran", "measure"),
    Column("gpu_compute_s", _F, "GPU-seconds with a kernel running (utilisation x time, summed over GPUs)", "measure"),
    Column("energy_method", _S, "NVML's total-energy counter, or power integrated over the samples", "detail"),
    Column("framework", _S, "the framework that ran", "detail", reportable=True),
    Column("framework_version", _S, "its version", "detail", reportable=True),
    Column("versions_json", _S, "versions of the packages in the trial", "detail", json_from="versions"),
    Column("data", _S, "cifar10, synthetic, ...", "detail", reportable=True),
    Column("data_note", _S, "what the data was", "detail", reportable=True),
    Column("parallelism", _S, "how several devices were used", "detail", reportable=True),
    Column("child_env_json", _S, "the variables gpu-grid set for the trial", "detail"),
    Column("timeout_s", _F, "the trial's timeout", "setting"),
    Column("queued_at", _TS, "when the trial was queued", "time"),
    Column("dispatched_at", _TS, "when a worker got it", "time"),
    Column("started_at", _TS, "when its process started", "time"),
    Column("ended_at", _TS, "when its process ended", "time"),
    Column("log_path", _S, "the trial's output", "detail"),
    Column("trial_dir", _S, "the trial's own folder (GRID_TRIAL_DIR), if it holds files", "detail"),
    Column("grid_version", _S, "gpu-grid's version", "where"),
)

BY_NAME = {c.name: c for c in COLUMNS}
BASE_FIELDS: list[pa.Field] = [pa.field(c.name, c.type) for c in COLUMNS]
BASE_NAMES = frozenset(BY_NAME)
MEASURES = tuple(c.name for c in COLUMNS if c.role == "measure")
REPORTABLE = frozenset(c.name for c in COLUMNS if c.reportable)
REPORTED_AS_JSON = {c.json_from: c.name for c in COLUMNS if c.json_from}
_ARROW_OF: dict[type, pa.DataType] = {int: _I64, float: _F, str: _S, bool: pa.bool_()}

_HIGHER = re.compile(
    r"(_per_s$|(^|_)(acc|accuracy|auc|precision|recall|f1|iou|map|bleu|rouge|r2|score|"
    r"throughput)(_|$))"
)
_LOWER = re.compile(r"((^|_)(loss|error|err|mae|mse|rmse|perplexity|ppl|latency|time|times)(_|$)|_s$|_mib$|_mb$)")


def known_goal(name: str) -> str | None:
    """A metric's direction: a measurement's declared one, else from its name (`*acc*`, `*_per_s`
    higher; `*loss*`, `*_s`, `*_mib` lower), or None when neither tells."""
    column = BY_NAME.get(name)
    if column is not None and column.role == "measure":
        return column.goal
    lowered = name.lower()
    if _HIGHER.search(lowered):
        return "max"
    if _LOWER.search(lowered):
        return "min"
    return None


def is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def metric_columns(schema: pa.Schema, config_keys: set[str]) -> list[str]:
    """The numeric measurements of a table: gpu-grid's own and the trials' own metrics (any
    numeric column that is neither a base column nor a config value)."""
    return sorted(
        f.name
        for f in schema
        if is_numeric(f.type) and f.name not in config_keys and (f.name in MEASURES or f.name not in BASE_NAMES)
    )


def value_type(value: Any) -> pa.DataType:
    """The column type of a value outside the base schema (a metric or an untyped config value)."""
    if value is None:
        return pa.null()  # unifies with whatever type other rows give the column
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, list):
        inner = {value_type(v) for v in value if v is not None}
        return pa.list_(inner.pop() if len(inner) == 1 else _S)
    for kind, arrow in _ARROW_OF.items():
        if isinstance(value, kind):
            return arrow
    raise ResultsError(f"cannot store a {type(value).__name__} in a results column: {value!r}")


def rows_to_table(rows: list[dict[str, Any]], kinds: dict[str, type] | None = None) -> pa.Table:
    """Rows as a table: every base column with its declared type (null where a row has no value),
    config columns with their params' types (`kinds`), any other column (a metric) typed by its value."""
    types: dict[str, pa.DataType] = {}
    for row in rows:
        for name, value in row.items():
            if name in BY_NAME:
                continue
            if kinds and name in kinds:
                types[name] = _ARROW_OF[kinds[name]]
            elif types.get(name, pa.null()) == pa.null():
                types[name] = value_type(value)
    fields = BASE_FIELDS + [pa.field(n, t) for n, t in types.items()]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))
