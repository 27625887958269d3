"""Workloads: each runs alone as `python -m tasks.<name> trial.json`.

This package's top level is stdlib-only: the scheduler reads the registry below to validate
specs, and a separate interpreter (MXNet's virtualenv) must be able to import it. Frameworks
are imported only inside a workload's child process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

FRAMEWORK_BACKENDS = ("tensorflow", "jax", "torch")
ALL_BACKENDS = ("none", *FRAMEWORK_BACKENDS, "mxnet")


@dataclass(frozen=True)
class Param:
    """One trial parameter: its type, default and the check that a value must pass."""

    name: str
    kind: type
    default: Any
    expected: str
    check: Callable[[Any], bool] = lambda v: True
    nullable: bool = False
    choices: tuple = ()

    def problem(self, value: Any) -> str | None:
        """Why `value` is not acceptable, or None."""
        if value is None:
            return None if self.nullable else self.expected
        if self.choices:
            return None if value in self.choices else f"one of {list(self.choices)}"
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.kind is int and isinstance(value, bool):
            return self.expected
        if not isinstance(value, self.kind):
            return self.expected
        return None if self.check(value) else self.expected

    def coerce(self, value: Any) -> Any:
        if value is not None and self.kind is float:
            return float(value)
        return value


def _backend(choices: tuple[str, ...], default: str) -> Param:
    return Param("backend", str, default, f"one of {list(choices)}", choices=choices)


MEMORY_FRACTION = Param(
    "memory_fraction", float, None, "0 < f <= 1 or null", lambda f: 0 < f <= 1, nullable=True
)
BATCH_SIZE = Param("batch_size", int, 32, "an integer >= 1", lambda n: n >= 1)
GPUS = Param("gpus", int, 1, "an integer >= 1", lambda n: n >= 1)
EPOCHS = Param("epochs", int, 2, "an integer >= 1", lambda n: n >= 1)


def _images(default: int) -> Param:
    return Param("images", int, default, "an integer >= 1", lambda n: n >= 1)


@dataclass(frozen=True)
class Workload:
    name: str
    summary: str
    params: dict[str, Param] = field(default_factory=dict)
    # backend -> module, where a backend's trials run another module (and interpreter), e.g. mxnet
    backend_modules: dict[str, str] = field(default_factory=dict)

    def module_for(self, backend: str | None) -> str:
        return self.backend_modules.get(backend or "", f"tasks.{self.name}")

    def defaults(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.params.items()}


def _workload(name: str, summary: str, *params: Param, backend_modules: dict[str, str] | None = None) -> Workload:
    return Workload(name, summary, {p.name: p for p in params}, backend_modules or {})


_RESNET_PARAMS = (
    EPOCHS,
    _images(50000),
    Param("mode", str, "train", "one of ['train', 'inference']", choices=("train", "inference")),
    Param("data_dir", str, None, "a directory holding CIFAR-10 (python pickles) or null", nullable=True),
    Param("memory_growth", bool, False, "true or false"),
    Param("preallocate", bool, True, "true or false"),
)

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        _workload(
            "sleep",
            "No framework: sleeps, optionally holds memory or fails; for scheduler tests and benchmarks.",
            _backend(ALL_BACKENDS, "none"),
            MEMORY_FRACTION,
            BATCH_SIZE,
            GPUS,
            Param("seconds", float, 1.0, "a number >= 0", lambda s: s >= 0),
            Param("hold_mib", int, 0, "an integer >= 0 (MiB of CPU memory to hold)", lambda n: n >= 0),
            Param("fail", str, "none", "one of ['none', 'error', 'oom', 'crash']",
                  choices=("none", "error", "oom", "crash")),
        ),
        _workload(
            "keras_tiny",
            "A small CNN trained for real with Keras 3 on CIFAR-10-shaped synthetic data.",
            _backend(FRAMEWORK_BACKENDS, "jax"),
            MEMORY_FRACTION,
            BATCH_SIZE,
            GPUS,
            EPOCHS,
            _images(2048),
        ),
        _workload(
            "keras_resnet50",
            "ResNet-50 (32x32x3, 10 classes) on CIFAR-10 or synthetic data: Keras 3 on tensorflow, jax "
            "and torch; MXNet Gluon resnet50_v1 for backend mxnet (its own interpreter).",
            _backend((*FRAMEWORK_BACKENDS, "mxnet"), "jax"),
            MEMORY_FRACTION,
            BATCH_SIZE,
            GPUS,
            *_RESNET_PARAMS,
            backend_modules={"mxnet": "tasks.mxnet_resnet50"},
        ),
        _workload(
            "mxnet_resnet50",
            "MXNet Gluon resnet50_v1 (10 classes), run by the MXNet virtualenv's interpreter.",
            _backend(("mxnet",), "mxnet"),
            MEMORY_FRACTION,
            BATCH_SIZE,
            GPUS,
            *_RESNET_PARAMS,
        ),
    )
}
