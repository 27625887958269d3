"""The worker <-> trial protocol: what the grid side and a trial's processes agree on.

One module for both sides, versioned: the environment variables gpu-grid sets for a trial, the
operator knobs (declared once, read when used, never at import), the exit statuses the trial side
uses on purpose, the trial document (the JSON at $GRID_TRIAL) and the record each Python process
of a trial leaves (grid/trial/collect.py reads them back). Stdlib only, and it imports nothing of
`grid`: the trial side (tasks/site/gridtrial/protocol.py) loads this file by its path, in any
interpreter a trial runs (MXNet's own virtualenv too), without importing the `grid` package.

Versions: VERSION is written into every document and record. A record of another version (or of
none) is refused, never read as if it were this one (ProtocolMismatch; collect puts the reason in
the row's notes); a trial document of another version stops the bootstrap (exit
Exit.BOOTSTRAP_FAILED, the reason on stderr), one without a version is hand-written and read as
this one. Unknown keys are ignored and missing ones take their defaults, so adding a field with a
default needs no new version; changing a field's meaning or removing one does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar, TypeVar

VERSION = 1  # bumped when a field changes meaning or goes; readers of another version say so


class Env:
    """The variables gpu-grid sets in a trial's environment (and reads back on either side)."""

    TRIAL = "GRID_TRIAL"  # path of the trial document (JSON) of the attempt
    TRIAL_ID = "GRID_TRIAL_ID"
    ATTEMPT = "GRID_ATTEMPT"
    TRIAL_DIR = "GRID_TRIAL_DIR"  # the trial's own folder, `{trial_dir}`
    PARENT_PID = "GRID_PARENT_PID"  # the worker: the trial's first process dies with it (guard)
    CGROUP_PROCS = "GRID_CGROUP_PROCS"  # the attempt's cgroup to join, or "-"
    RANK_PARENT = "GRID_RANK_PARENT"  # the socket of the warm launcher's rank parent (torchrun ranks)
    PREFIX = "GRID_"  # every config value is GRID_<NAME> too; inherited GRID_* variables are dropped
    # the operator knobs (KNOBS), read with knob(): named here so that no reader spells them itself
    TRIAL_DIR_SYNC_S = "GRID_TRIAL_DIR_SYNC_S"
    PROFILE = "GRID_PROFILE"
    FULL_EXIT = "GRID_FULL_EXIT"


# gpu-grid's own helper processes inside a trial's tree, by name (/proc/<pid>/comm: 15 characters
# at most): the rank parent (tasks/site/gridtrial/ranks.py), which a trial's RSS leaves out
# (grid/trial/measure.py).
RANK_PARENT_NAME = "gpu-grid-ranks"


def config_var(name: str) -> str:
    """The variable that carries a config value: batch_size -> GRID_BATCH_SIZE."""
    return f"{Env.PREFIX}{name.upper()}"


@dataclass(frozen=True)
class Knob:
    """A setting an operator gives through the environment: of the workers' machines (`worker`)
    or of a trial (`trial`: through the spec's `env:`)."""

    name: str
    default: str
    meaning: str
    side: str  # worker | trial


KNOBS: dict[str, Knob] = {
    k.name: k
    for k in (
        Knob(
            "GRID_TRIAL_DIR_SYNC_S",
            "60",
            "results on S3: how often (seconds) a running trial's settled new or changed files go up",
            "worker",
        ),
        Knob(
            "GRID_PROFILE",
            "",
            "a folder: every Python process of the trial samples its stack there (tasks/site/gridtrial/stacks.py)",
            "trial",
        ),
        Knob(
            "GRID_FULL_EXIT",
            "",
            "1: a warm trial ends with the interpreter's full teardown (its __del__ and finalisers run)",
            "trial",
        ),
    )
}


def knob(name: str, environ: Mapping[str, str] | None = None) -> str:
    """A knob's value now (its default when unset); an undeclared name is a bug, not a setting."""
    declared = KNOBS[name]
    return (os.environ if environ is None else environ).get(name, declared.default)


def knob_seconds(name: str, environ: Mapping[str, str] | None = None) -> float:
    """A knob that holds seconds; a value that is not a number > 0 is refused with its name."""
    text = knob(name, environ)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"{name}: received {text!r}, expected seconds > 0")
    return value


class Exit:
    """Exit statuses the trial side gives on purpose (a script's own `sys.exit(n)` passes as it is)."""

    OK = 0
    ERROR = 1  # an uncaught exception in the trial's script or function: Python's own status for it
    BOOTSTRAP_FAILED = 1  # the bootstrap could not start (bad trial document, a cap it could not set):
    # the process ends before the script runs, rather than run it uncapped (tasks/site/gridtrial/boot.py)
    ORPHANED = 1  # the worker died before the trial's first process was tied to it (guard.py)
    WARM_UNSAFE = 3  # a warm parent that must not fork trials: an import started a GPU runtime or failed;
    # its one JSON line says which (zygote.py), and the worker starts a parent that imports less
    RELAY_LOST = 1  # a warm torchrun rank whose rank parent died (ranks.py): nothing left to wait for


class ProtocolMismatch(ValueError):
    """A document or record of another protocol version: refused, never misread."""


def _home() -> str:
    """The gpu-grid this protocol file belongs to (said in a mismatch: which install is which)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check_version(data: Mapping[str, Any], what: str, unversioned_ok: bool) -> None:
    version = data.get("protocol")
    if version == VERSION or (version is None and unversioned_ok):
        return
    found = (
        "of no protocol version (written before gpu-grid versioned it)"
        if version is None
        else f"of protocol version {version!r}"
    )
    raise ProtocolMismatch(
        f"{what} {found}; the gpu-grid at {_home()} reads version {VERSION}: the trial ran "
        f"another gpu-grid's bootstrap (tasks/site) than the worker's"
    )


def plain(value: Any) -> Any:
    """`value` as JSON holds it: records by their fields, enums by their values, numpy and framework
    scalars as numbers, anything else JSON cannot hold as text."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        return {f: plain(getattr(value, f)) for f in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    item = getattr(value, "item", None)  # numpy and framework scalars
    if callable(item):
        try:
            return plain(item())
        except (TypeError, ValueError):
            pass
    return str(value)


_T = TypeVar("_T")
_NAMES: dict[type, frozenset[str]] = {}


def _build(cls: Any, data: Mapping[str, Any], **parse: Callable[[Any], Any]) -> Any:
    """`cls` from a JSON mapping: unknown keys ignored, missing ones defaulted, nested parts parsed."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = frozenset(f.name for f in fields(cls))
    kwargs = {k: v for k, v in data.items() if k in names}
    for name, parser in parse.items():
        if kwargs.get(name) is not None:
            kwargs[name] = parser(kwargs[name])
    return cls(**kwargs)


def _list_of(parse: Callable[[Any], _T]) -> Callable[[Any], list[_T]]:
    return lambda values: [parse(v) for v in values]


def _dict_of(parse: Callable[[Any], _T]) -> Callable[[Any], dict[str, _T]]:
    return lambda values: {str(k): parse(v) for k, v in values.items()}


class _Json:
    """JSON out (`to_dict`, `to_json`); each record class parses itself in (`from_dict`). Equality
    and repr by fields, here once rather than generated per class: every Python process of a trial
    builds these classes at its start (dataclasses compiles each generated method on its own)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = plain(self)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__dataclass_fields__)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__dataclass_fields__)
        return f"{type(self).__qualname__}({shown})"


_part = dataclass(repr=False, eq=False)  # a record's part: _Json gives it equality and repr


# -- the trial document: what the worker tells every process of an attempt (the JSON at $GRID_TRIAL)


@dataclass(frozen=True, repr=False, eq=False)
class TrialDocument(_Json):
    """One attempt of one trial, as its processes see it (grid/trial/launch.py writes it; a trial run
    by hand may write its own: only `records_dir` is needed). A script may read it too (its keys are
    the README's)."""

    records_dir: str  # where each Python process of the trial leaves its record
    trial_id: str = "trial"
    attempt: int = 0
    sweep: str | None = None
    workload: str | None = None
    repeat: int = 0
    config: dict[str, Any] = field(default_factory=dict)  # every axis and param value
    gpu_ids: list[str] = field(default_factory=list)  # NVML indexes or UUIDs, as the worker assigned them
    gpu_total_mib: list[float] = field(default_factory=list)  # each GPU's memory, from NVML
    workdir: str | None = None
    function: str | None = None  # `module:function` for `python -m gridtrial`
    command: list[str] | None = None  # the command as it runs (placeholders filled in)
    # a search's probe: end the trial after this many optimizer steps, once the framework's peak stopped
    # growing (its memory is what the probe is for), where gpu-grid hooks the training loop
    stop_after_steps: int | None = None
    sample_interval_ms: int = 100  # how often the worker samples the trial (a probe waits two before it ends)
    protocol: int = VERSION

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialDocument:
        _check_version(data, "the trial document is", unversioned_ok=True)
        if not data.get("records_dir"):
            raise ValueError(
                "the trial document names no records_dir (where each process of the trial leaves its record)"
            )
        return _build(cls, data, gpu_ids=_list_of(str), config=dict)

    @classmethod
    def from_json(cls, text: str) -> TrialDocument:
        return cls.from_dict(json.loads(text))


# -- the record of one Python process of a trial (tasks/site/gridtrial/record.py writes it)


class BatchSource(str, Enum):
    """Where a Keras call's batch size was taken from (tasks/site/gridtrial/keras_probe.py)."""

    CALL = "call"  # fit(batch_size=...) or predict(batch_size=...)
    DATASET = "dataset"  # the dataset's static batch dimension (tf.data, a DataLoader, a PyDataset)
    KERAS_DEFAULT = "keras_default"  # arrays without batch_size: Keras' 32
    CONFIG = "config"  # the trial's batch_size param: the data does not show its batch size
    UNKNOWN = "unknown"  # none of these: images/s cannot be counted


_BATCH_TEXT = {
    BatchSource.CALL: "the call's batch_size",
    BatchSource.DATASET: "the dataset's batch dimension",
    BatchSource.KERAS_DEFAULT: "Keras' default batch_size (32)",
    BatchSource.CONFIG: "the trial's batch_size (the data does not show its batch size)",
}


@_part
class Batch(_Json):
    """The global batch of a Keras fit or predict call, and where that figure comes from."""

    size: int | None = None
    source: BatchSource = BatchSource.UNKNOWN
    data: str | None = None  # the data's type, where it shows no batch size (what to do about it: `text`)

    @property
    def text(self) -> str:
        """Where the figure comes from, for a row's notes."""
        if self.source in _BATCH_TEXT:
            return _BATCH_TEXT[self.source]
        return (
            f"not shown by the data ({self.data}); give the trial a batch_size (in the spec's params or axes) "
            "and images/s counts batches of it"
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Batch:
        return _build(cls, data, source=BatchSource)


@_part
class Compiles(_Json):
    """Compilations that asked a persistent cache (jax's, torch.compile's) and the cache's answers."""

    requests: int = 0
    hits: int = 0
    saved_s: float | None = None  # jax's own figure: compile time saved minus load time

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Compiles:
        return _build(cls, data)


@_part
class Epoch(_Json):
    """One epoch of a training loop: its time, the training part of it, steps, and when it ended."""

    s: float
    train_s: float | None = None  # without the validation run inside the epoch
    steps: int | None = None
    end: float | None = None  # wall clock (unix seconds): the worker takes the GPU's energy between epochs
    compiles: Compiles | None = None  # the process's so far, at the epoch's end
    samples: int | None = None  # samples trained, counted from the batches themselves (not steps x batch)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Epoch:
        return _build(cls, data, compiles=Compiles.from_dict)


class Loop(str, Enum):
    """The training loop a `Fit` was measured in."""

    KERAS = "keras"  # Model.fit (keras_probe.py)
    LIGHTNING = "lightning"  # lightning's / pytorch_lightning's Trainer.fit (lightning_probe.py)
    HUGGINGFACE = "huggingface"  # transformers' Trainer.train (hf_probe.py)
    DATALOADER = "dataloader"  # a plain loop: full passes of a torch DataLoader with gradients on (loader_probe.py)


@_part
class Fit(_Json):
    """One training run of a loop: a Keras `fit` call, a Lightning `fit`, a Hugging Face `train`, or
    the passes of a plain PyTorch loop."""

    batch: Batch = field(default_factory=Batch)
    epochs: list[Epoch] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)  # every logged metric, per epoch
    loop: Loop = Loop.KERAS
    last: dict[str, float] = field(default_factory=dict)  # each logged metric's last value (where not per epoch)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fit:
        return _build(
            cls, data, batch=Batch.from_dict, epochs=_list_of(Epoch.from_dict), history=dict, loop=Loop, last=dict
        )


@_part
class Evaluate(_Json):
    """One standalone Keras `evaluate` call (fit's own validation is inside fit's epochs)."""

    s: float
    logs: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluate:
        return _build(cls, data, logs=dict)


@_part
class Predict(_Json):
    """One Keras `predict` pass."""

    s: float
    batch: Batch = field(default_factory=Batch)
    images: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Predict:
        return _build(cls, data, batch=Batch.from_dict)


@_part
class Cap(_Json):
    """What the memory cap meant for one framework in one process."""

    method: str  # the memory_cap_method text: exactly what was applied
    # whether the framework started on a GPU in this process: False where the cap waited for it and it
    # never came (a torchrun launcher that imports torch without using CUDA, or no GPU visible); None
    # where the cap does not depend on it (set before the import, or no cap)
    gpu_started: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cap:
        return _build(cls, data)


@_part
class FrameworkMemory(_Json):
    """A framework's own device-memory counters in one process (tasks/site/gridtrial/devmem.py)."""

    peak_mib: float | None = None  # summed over the process's devices; None where it keeps no counter
    detail: dict[str, Any] = field(default_factory=dict)  # the raw figures per device, or why none

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrameworkMemory:
        return _build(cls, data, detail=dict)


@_part
class ErrorInfo(_Json):
    """An exception a process of the trial raised (grid decides whether it was out of memory)."""

    type: str  # module.qualname
    message: str = ""
    traceback: str = ""
    at: float | None = None  # unix seconds: the trial's error is the earliest

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorInfo:
        return _build(cls, data)


class StartedAs(str, Enum):
    """How a process of the trial started."""

    FRESH = "fresh"  # a new interpreter: the trial's command, a Python child of it, a rank started cold
    WARM_PARENT = "warm_parent"  # forked from a warm parent, which had imported the framework (zygote.py)
    FORK = "fork"  # forked from a process of the trial (a DDP rank that torch.multiprocessing forks)
    WARM_RANK = "warm_rank"  # a torchrun rank forked from the warm launcher's rank parent (ranks.py)


@_part
class ProcessRecord(_Json):
    """What the bootstrap saw and measured in one Python process of a trial."""

    pid: int
    started: float  # unix seconds
    ppid: int | None = None
    argv: list[str] = field(default_factory=list)
    rank: str | None = None  # RANK, LOCAL_RANK as the launcher set them
    local_rank: str | None = None
    started_as: StartedAs = StartedAs.FRESH
    updated: float | None = None  # when the file was last written
    import_s: float | None = None  # seconds importing frameworks, nested imports counted once
    versions: dict[str, str | None] = field(default_factory=dict)  # frameworks, jaxlib, cuda, numpy
    caps: dict[str, Cap] = field(default_factory=dict)  # per framework imported
    memory: dict[str, FrameworkMemory] = field(default_factory=dict)  # per framework started
    fits: list[Fit] = field(default_factory=list)
    evaluates: list[Evaluate] = field(default_factory=list)
    predicts: list[Predict] = field(default_factory=list)
    reports: dict[str, Any] = field(default_factory=dict)  # gridtrial.report(): numbers, text, lists of numbers
    returned: dict[str, Any] | None = None  # a `function:` target's return value
    error: ErrorInfo | None = None  # the uncaught exception that ended the process
    compiles: Compiles | None = None
    imported: list[str] = field(default_factory=list)  # top-level packages it imported (not stdlib, not its own)
    boot_s: float | None = None  # gpu-grid's own seconds starting this process (sitecustomize to bootstrap done)
    stopped_after_steps: int | None = None  # a probe ended by gpu-grid after this many optimizer steps
    protocol: int = VERSION

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessRecord:
        _check_version(data, "a process record", unversioned_ok=False)
        return _build(
            cls,
            data,
            started_as=StartedAs,
            caps=_dict_of(Cap.from_dict),
            memory=_dict_of(FrameworkMemory.from_dict),
            fits=_list_of(Fit.from_dict),
            evaluates=_list_of(Evaluate.from_dict),
            predicts=_list_of(Predict.from_dict),
            error=ErrorInfo.from_dict,
            compiles=Compiles.from_dict,
        )

    @classmethod
    def from_json(cls, text: str) -> ProcessRecord:
        return cls.from_dict(json.loads(text))
