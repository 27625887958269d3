"""A trial's measurements: the records its processes left (tasks/site/gridtrial/record.py: the
protocol's ProcessRecord, grid/protocol.py), merged into the row's columns, with what the trial
reported on top.

- Epochs come from the primary process: the one that ran Keras `fit` (rank 0 of several), else
  `predict` passes (an inference trial). The first epoch of each `fit` call includes compiling;
  the steady epoch is the median of the others; images/s is steps x batch over the epoch's
  training time (validation excluded).
- Memory caps, framework peaks and versions come from every process that imported the framework
  (DDP ranks each cap and count their own device).
- Reported values (`gridtrial.report`, a function's return, `metrics:` patterns, History) set a
  measurement column of their name, or become a column of their own.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from grid.protocol import Batch, BatchSource, Cap, Fit, Loop, ProcessRecord, ProtocolMismatch, StartedAs
from grid.results.row import Epochs, Framework, FrameworkMemory, MetricValue, Row, Start
from grid.results.schema import BY_NAME, REPORTABLE, REPORTED_AS_JSON
from grid.trial import compilecache

FRAMEWORKS = ("tensorflow", "jax", "torch", "mxnet")
DEFAULT_CAP = "none (framework default)"


class Records(list[ProcessRecord]):
    """The records of a trial's processes, oldest first, and why any file there was not read."""

    def __init__(self, records: Sequence[ProcessRecord] = (), unread: Sequence[str] = ()):
        super().__init__(records)
        self.unread = list(unread)  # notes for the row: a record of another protocol version, ...


def read_records(folder: str) -> Records:
    """Every process's record, oldest first. A file that is not whole JSON is skipped (a process
    killed while writing leaves only its temporary file); one that is not a record of this
    protocol is left out with a note (Records.unread), never read as if it were one."""
    out = Records()
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except OSError:
        return out
    for name in names:
        try:
            with open(os.path.join(folder, name)) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        try:
            out.append(ProcessRecord.from_dict(data))
        except ProtocolMismatch as exc:
            out.unread.append(f"record {name} not read: {exc}")
        except (TypeError, ValueError, AttributeError) as exc:
            out.unread.append(f"record {name} not read: not a process record ({type(exc).__name__}: {exc})")
    out.sort(key=lambda r: r.started or 0)
    return out


def _keras_active(record: ProcessRecord) -> bool:
    return bool(record.fits or record.predicts or record.evaluates)


def primary(records: Sequence[ProcessRecord]) -> ProcessRecord | None:
    """The process whose epochs are the trial's: Keras activity, rank 0 first, then the oldest."""
    if not records:
        return None
    active = [r for r in records if _keras_active(r)] or records
    return min(
        active,
        key=lambda r: (r.rank not in (None, "0"), r.local_rank not in (None, "0"), r.started or 0),
    )


@dataclass(frozen=True)
class Timed:
    """One timed pass of the primary process: a Keras epoch, or a predict pass of an inference run."""

    s: float
    train_s: float  # the epoch without its validation
    images: int | None
    first: bool  # the first of its fit call: it includes compiling
    end: float | None = None  # wall clock at its end
    steps: int | None = None


def training_fits(record: ProcessRecord) -> tuple[list[Fit], str | None]:
    """The fits whose epochs are the process's, and how they were found (for the row's notes): a
    framework's loops (Keras, Lightning, Hugging Face) where any ran; else the plain passes of the
    DataLoader that trained on the most samples."""
    framework = [f for f in record.fits if f.loop is not Loop.DATALOADER]
    if framework:
        return framework, None
    loaders = [f for f in record.fits if f.loop is Loop.DATALOADER and f.epochs]
    if not loaders:
        return [], None
    chosen = max(loaders, key=lambda f: sum(e.samples or e.steps or 0 for e in f.epochs))
    how = (
        f"epochs: {len(chosen.epochs)} full pass(es) of a torch DataLoader with gradients on "
        f"(passes under no_grad left out)"
    )
    if len(loaders) > 1:
        how += f"; {len(loaders) - 1} other DataLoader(s) iterated with gradients on left out (fewer samples)"
    return [chosen], how


def loop_epochs(record: ProcessRecord) -> tuple[list[Timed], Batch | None, bool]:
    """The timed passes of a process's training fits, else of its predicts; the batch (its size,
    where that figure came from) of the last; and whether the images were counted from the batches
    themselves (not steps x batch size)."""
    epochs: list[Timed] = []
    batch: Batch | None = None
    counted = True
    for fit in training_fits(record)[0]:
        batch = fit.batch
        for i, e in enumerate(fit.epochs):
            images = e.samples
            if images is None:
                counted = False
                images = e.steps * batch.size if e.steps is not None and batch.size else None
            epochs.append(Timed(e.s, e.train_s or e.s, images, i == 0, e.end, e.steps))
    if epochs:
        return epochs, batch, counted
    for i, p in enumerate(record.predicts):
        batch = p.batch
        epochs.append(Timed(p.s, p.s, p.images, i == 0))
    return epochs, batch, False


def epochs_of(epochs: list[Timed]) -> Epochs:
    """First epoch (it includes compiling) apart from the median of the steady ones, and images/s:
    the median over the steady epochs of images / training time (validation left out). One formula
    for every source of epochs: a Keras fit, predict passes, or times the trial printed or reported
    (whose training time is all the time it gave)."""
    if not epochs:
        return Epochs()
    times = [float(e.s) for e in epochs]
    steady = [e for e in epochs if not e.first]
    rates = [e.images / e.train_s for e in (steady or epochs[:1]) if e.images and e.train_s > 0]
    return Epochs(
        epoch_times=times,
        first_epoch_s=times[0],
        steady_epoch_s=float(statistics.median(e.s for e in steady)) if steady else None,
        images_per_s=float(statistics.median(rates)) if rates else None,
        images_per_epoch=epochs[-1].images,
    )


def given_epochs(times: list[float], images_per_epoch: int | None) -> list[Timed]:
    """Epoch times a trial printed (a `metrics:` pattern) or reported: one pass, the first compiling."""
    return [Timed(float(t), float(t), images_per_epoch, i == 0) for i, t in enumerate(times)]


def _framework(records: Sequence[ProcessRecord], backend: str | None) -> str | None:
    imported = [f for f in FRAMEWORKS if any(f in r.versions for r in records)]
    if backend in imported:
        return backend
    return imported[0] if len(imported) == 1 else None


def cap_method(records: Sequence[ProcessRecord], framework: str) -> str | None:
    """What the cap meant, from every process that imported the framework; processes where the
    framework never started on a GPU do not count when others did."""
    caps: list[Cap] = [r.caps[framework] for r in records if framework in r.caps]
    started = [c for c in caps if c.gpu_started is not False]
    methods = [c.method for c in (started or caps)]
    if not methods:
        return None
    distinct = list(dict.fromkeys(methods))
    if len(distinct) > 1:
        return "; ".join(distinct)
    if len(methods) == 1 or distinct[0] == DEFAULT_CAP:
        return distinct[0]
    return f"{distinct[0]}, in each of {len(methods)} processes"


def framework_memory(records: Sequence[ProcessRecord], framework: str) -> FrameworkMemory:
    counted = [(r.pid, r.memory[framework]) for r in records if framework in r.memory]
    method = cap_method(records, framework)
    if not counted:
        return FrameworkMemory(memory_cap_method=method)
    peaks = [m.peak_mib for _, m in counted if m.peak_mib is not None]
    detail = counted[0][1].detail if len(counted) == 1 else {str(pid): m.detail for pid, m in counted}
    return FrameworkMemory(
        framework_peak_mib=sum(peaks) if peaks else None,
        framework_mem_json=json.dumps(detail, sort_keys=True),
        memory_cap_method=method,
    )


def steady_spans(records: Sequence[ProcessRecord]) -> list[tuple[float, float, int]]:
    """(start, end, images) in wall-clock time of each steady epoch (not the first of a fit) of
    the process that trained, where its epochs carry their end time (Keras fits)."""
    main = primary(records)
    epochs = loop_epochs(main)[0] if main is not None else []
    return [(e.end - e.s, e.end, e.images) for e in epochs if not e.first and e.end is not None and e.images]


@dataclass
class Measured:
    """What the records alone say, in the row's sub-records, and notes on how it was obtained."""

    epochs: Epochs
    start: Start
    framework: Framework
    framework_memory: FrameworkMemory
    notes: list[str]
    how: str | None = None  # how the epochs were found, where that is worth a note (a plain loop's)
    window: tuple[float | None, int | None] = (None, None)  # the steady window: seconds, steps


def steady_window(epochs: list[Timed]) -> tuple[float | None, int | None]:
    """Seconds and steps of the steady epochs (None where there is none; steps None where not counted)."""
    steady = [e for e in epochs if not e.first]
    if not steady:
        return None, None
    steps = [e.steps for e in steady]
    return float(sum(e.s for e in steady)), None if None in steps else int(sum(s or 0 for s in steps))


def measurements(records: Sequence[ProcessRecord], config: dict[str, Any]) -> Measured:
    """The row's epochs, compile state, framework and framework memory from the records alone."""
    notes: list[str] = list(records.unread) if isinstance(records, Records) else []
    main = primary(records)
    start = compilecache.first_epoch_state(main, config)
    start.boot_s = main.boot_s if main is not None else None
    if main is None:
        return Measured(Epochs(processes=0), start, Framework(), FrameworkMemory(), notes)
    timed, batch, counted = loop_epochs(main)
    fits, how = training_fits(main)
    epochs = epochs_of(timed)
    epochs.processes, epochs.import_s = len(records), main.import_s
    epochs.fit_calls = len(fits) if how is None else None
    if batch is not None and batch.size:
        epochs.global_batch = batch.size
    if timed and not counted and batch is not None and batch.size and batch.source is not BatchSource.CALL:
        notes.append(f"images/s counts batches of {batch.size}: {batch.text}")
    if timed and epochs.images_per_s is None:
        notes.append(f"images/s unknown: the batch size is {batch.text if batch is not None else 'unknown'}")
    if main.stopped_after_steps:
        notes.append(
            f"a probe: ended by gpu-grid after {main.stopped_after_steps} optimizer steps, once its memory "
            f"stopped growing (search.probe_steps); its epochs are not the trial's"
        )
    forked = sum(1 for r in records if r.started_as is StartedAs.WARM_RANK)
    if forked:
        notes.append(f"torchrun's {forked} ranks forked from the warm launcher")
    versions: dict[str, Any] = {}
    for record in [main, *records]:
        versions.update({k: v for k, v in record.versions.items() if k not in versions})
    framework = Framework(versions_json=json.dumps(versions, sort_keys=True) if versions else None)
    memory = FrameworkMemory()
    name = _framework(records, config.get("backend"))
    if name:
        framework.framework, framework.framework_version = name, versions.get(name)
        memory = framework_memory(records, name)
    return Measured(epochs, start, framework, memory, notes, how, steady_window(timed))


def history(records: Sequence[ProcessRecord]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Final History values (and their per-epoch series) of the primary's last fit, and its last
    standalone `evaluate` as eval_<name>."""
    main = primary(records)
    values: dict[str, float] = {}
    series: dict[str, list[float]] = {}
    if main is None:
        return values, series
    fits = training_fits(main)[0]
    if fits:
        for name, per_epoch in fits[-1].history.items():
            if per_epoch:
                values[name] = per_epoch[-1]
                series[name] = per_epoch
        values.update(fits[-1].last)  # the last value logged, where that is not an epoch's
    if main.evaluates:
        values.update({f"eval_{k}": v for k, v in main.evaluates[-1].logs.items()})
    return values, series


def reported(records: Sequence[ProcessRecord]) -> dict[str, Any]:
    """Explicit reports of every process (a later process wins a name), then a function's return."""
    out: dict[str, Any] = {}
    for record in records:
        out.update(record.reports)
    for record in records:
        out.update(record.returned or {})
    return out


def first_error(records: Sequence[ProcessRecord]) -> dict[str, Any] | None:
    """The earliest exception a process of the trial raised: type, message, traceback and when (at)."""
    errors = [r.error for r in records if r.error]
    return min(errors, key=lambda e: e.at or 0).to_dict() if errors else None


def _column_value(value: Any) -> MetricValue:
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    return None


def _measured_value(name: str, value: Any, notes: list[str]) -> Any:
    """A reported value in its measurement column's type (6000.0 images -> 6000)."""
    kind = BY_NAME[name].type
    try:
        if pa.types.is_integer(kind):
            return int(value)
        if pa.types.is_list(kind):
            return [float(v) for v in value]
        if pa.types.is_string(kind):
            return str(value)
        return float(value)
    except (TypeError, ValueError):
        notes.append(
            f"reported {name}={value!r} not kept: not {'a count' if pa.types.is_integer(kind) else 'a number'}"
        )
        return None


def apply_values(row: Row, values: dict[str, Any], taken: AbstractSet[str], notes: list[str]) -> list[str]:
    """Put reported values into the row; returns the names that became metric columns.

    A measurement column of that name takes it; names of other columns (`taken`: the row's own and
    the config's) are refused with a note; anything else becomes a column of its own."""
    metrics = []
    for name, value in values.items():
        if name in REPORTED_AS_JSON and isinstance(value, dict):
            row.set(REPORTED_AS_JSON[name], json.dumps(value, sort_keys=True, default=str))
        elif name in REPORTABLE:
            if value is not None:  # a pattern that never matched leaves the measurement alone
                row.set(name, _measured_value(name, value, notes))
        elif name in taken:
            notes.append(f"reported {name} not kept: it is the name of a config or bookkeeping column")
        elif _column_value(value) is None and value is not None:
            notes.append(
                f"reported {name} not kept: {type(value).__name__} is not a number, text, "
                f"true/false or a list of numbers"
            )
        else:
            row.metrics.values[name] = _column_value(value)
            metrics.append(name)
    given = values.get("epoch_times")
    if isinstance(given, list) and row.epochs.epoch_times:
        derived = epochs_of(given_epochs(row.epochs.epoch_times, row.epochs.images_per_epoch))
        for field in ("first_epoch_s", "steady_epoch_s", "images_per_s", "images_per_epoch"):
            if values.get(field) is None:
                setattr(row.epochs, field, getattr(derived, field))
    return metrics
