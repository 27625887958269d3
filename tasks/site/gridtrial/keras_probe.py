"""Keras `Model.fit`, `evaluate` and `predict`, measured with no change to the script.

Each call gets one more callback, placed first (the script's own callbacks still run, after it):
it times every epoch and the validation inside it, counts the epoch's steps on the optimizer's
iteration counter (right for arrays, `tf.data`, generators and `steps_per_execution` alike) and
keeps the epoch's logs, which hold every History metric. Nothing runs per batch: reading the
step counter at the end of training and of the epoch is the only device synchronisation, where
Keras waits anyway, so that asynchronous dispatch (jax) cannot move training time into validation.
The batch size comes from `fit(batch_size=...)`, the dataset's static batch dimension, Keras'
default of 32 for arrays, or the trial's `batch_size`, and the record says which (BatchSource).
Validation that `fit` runs through `evaluate` is not counted twice. What is measured goes into
the process's record as the protocol's Fit, Evaluate and Predict entries (grid/protocol.py).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

from gridtrial import current
from gridtrial.protocol import Batch, BatchSource, Compiles, Epoch, Evaluate, Fit, Predict

_inside = threading.local()  # in a fit call on this thread: its evaluate (validation) is fit's


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN: no value


def _scalars(logs: dict | None) -> dict[str, float]:
    out = {}
    for key, value in (logs or {}).items():
        number = _number(value)
        if number is not None:
            out[str(key)] = number
    return out


def _static_batch(x: Any) -> int | None:
    """A dataset's batch size when it declares one (tf.data static shape, a DataLoader, a PyDataset)."""
    spec = getattr(x, "element_spec", None)
    if spec is not None:
        leaf = spec
        while isinstance(leaf, (tuple, list, dict)) and leaf:
            leaf = next(iter(leaf.values())) if isinstance(leaf, dict) else leaf[0]
        shape = getattr(leaf, "shape", None)
        dims = list(shape) if shape is not None and getattr(shape, "rank", 1) is not None else []
        first = dims[0] if dims else None
        first = getattr(first, "value", first)
        return int(first) if isinstance(first, int) else None
    size = getattr(x, "batch_size", None)
    return size if isinstance(size, int) and size > 0 else None


def batch_of(args: dict[str, Any], config: dict[str, Any]) -> Batch:
    """The global batch a fit or predict call runs, and where that figure comes from."""
    if args.get("batch_size"):
        return Batch(int(args["batch_size"]), BatchSource.CALL)
    x = args.get("x")
    static = _static_batch(x)
    if static:
        return Batch(static, BatchSource.DATASET)
    if hasattr(x, "shape") or isinstance(x, (list, tuple, dict)):
        return Batch(32, BatchSource.KERAS_DEFAULT)
    if isinstance(config.get("batch_size"), int):
        return Batch(config["batch_size"], BatchSource.CONFIG)
    return Batch(None, BatchSource.UNKNOWN, data=type(x).__name__)


def _rows(x: Any) -> int | None:
    if isinstance(x, (list, tuple)) and x:
        x = x[0]
    if isinstance(x, dict) and x:
        x = next(iter(x.values()))
    shape = getattr(x, "shape", None)
    try:
        return int(shape[0]) if shape is not None else None
    except (TypeError, IndexError):
        return None


def _probe_class(keras, numpy, compile_counts: Callable[[], Compiles | None]):
    class GridProbe(keras.callbacks.Callback):
        """Epoch times, validation time inside them, steps, and the epoch logs."""

        def __init__(self):
            super().__init__()
            self.epochs: list[Epoch] = []
            self.history: dict[str, list[float]] = {}
            self.test_logs: dict[str, float] = {}
            self._val = 0.0

        def _iterations(self) -> int | None:
            counter = getattr(getattr(self.model, "optimizer", None), "iterations", None)
            try:
                return int(numpy.asarray(counter))
            except (TypeError, ValueError):
                return None

        def on_epoch_begin(self, epoch, logs=None):
            self._it0 = self._iterations()
            self._val = 0.0
            self._t0 = time.perf_counter()

        def on_test_begin(self, logs=None):
            # Backends dispatch steps asynchronously (jax above all): wait for training to finish
            # (the step counter is its last output) so that its time is not counted as validation.
            self._iterations()
            self._v0 = time.perf_counter()

        def on_test_end(self, logs=None):
            self._val += time.perf_counter() - self._v0
            self.test_logs = _scalars(logs)

        def on_epoch_end(self, epoch, logs=None):
            it1 = self._iterations()  # waits for the epoch's last step: the epoch ends when its work does
            seconds = time.perf_counter() - self._t0
            steps = it1 - self._it0 if it1 is not None and self._it0 is not None else self.params.get("steps")
            # `end`: the wall clock, so that the worker can take the GPU's energy over the steady epochs
            # compiles: the process's so far (was the first epoch compiled or loaded?)
            self.epochs.append(Epoch(seconds, seconds - self._val, steps, time.time(), compile_counts()))
            for key, value in _scalars(logs).items():
                self.history.setdefault(key, []).append(value)

    class GridStoppingProbe(GridProbe):
        """A search's probe: also told of each optimizer step (the bootstrap ends the trial once its
        memory is known); the step counter is read, so the step has run."""

        def on_train_batch_end(self, batch, logs=None):
            self._iterations()
            boot = current.bootstrap()
            if boot is not None:
                boot.probe_step()

    return GridProbe, GridStoppingProbe


def _first(callbacks: Any, probe) -> Any:
    """The script's callbacks with ours first (a list, one callback, None, or Keras' CallbackList)."""
    if callbacks is None:
        return [probe]
    if isinstance(callbacks, (list, tuple)):
        return [probe, *callbacks]
    inner = getattr(callbacks, "callbacks", None)
    if isinstance(inner, list):  # a CallbackList the script built: it already holds its model
        model = getattr(callbacks, "model", None)
        if model is not None:
            probe.set_model(model)
        inner.insert(0, probe)
        return callbacks
    return [probe, callbacks]


class KerasProbe:
    def __init__(self, keras, numpy, boot):
        self.keras, self._installed_by = keras, boot
        probe, stopping = _probe_class(keras, numpy, lambda: self.boot.compile_counts())
        self.Probe = stopping if boot.trial.stop_after_steps else probe

    @property
    def boot(self):
        """This process's bootstrap: the one that installed the probe, or a forked child's own
        (boot.start_in_fork), whose record is the one written there."""
        return current.bootstrap() or self._installed_by

    def install(self) -> None:
        model = self.keras.Model
        if getattr(model, "_gpu_grid_measured", False):
            return
        for name, wrap in (("fit", self._fit), ("evaluate", self._evaluate), ("predict", self._predict)):
            original = getattr(model, name)
            setattr(model, name, functools.wraps(original)(wrap(original, inspect.signature(original))))
        model._gpu_grid_measured = True

    def _bind(self, signature, model, args, kwargs):
        bound = signature.bind(model, *args, **kwargs)
        probe = self.Probe()
        bound.arguments["callbacks"] = _first(bound.arguments.get("callbacks"), probe)
        return bound, probe

    def _fit(self, original, signature):
        def fit(model, *args, **kwargs):
            if getattr(_inside, "fit", False):
                return original(model, *args, **kwargs)
            bound, probe = self._bind(signature, model, args, kwargs)
            batch = batch_of(bound.arguments, self.boot.config)
            _inside.fit = True
            current.enter_loop()
            try:
                return original(*bound.args, **bound.kwargs)
            finally:
                _inside.fit = False
                current.leave_loop()
                with self.boot.record.edit() as record:
                    record.fits.append(Fit(batch, probe.epochs, probe.history))
                self.boot.after_loop_call()

        return fit

    def _evaluate(self, original, signature):
        def evaluate(model, *args, **kwargs):
            if getattr(_inside, "fit", False):  # fit's own validation: timed by fit's probe
                return original(model, *args, **kwargs)
            bound, probe = self._bind(signature, model, args, kwargs)
            t0 = time.perf_counter()
            try:
                return original(*bound.args, **bound.kwargs)
            finally:
                with self.boot.record.edit() as record:
                    record.evaluates.append(Evaluate(time.perf_counter() - t0, probe.test_logs))
                self.boot.after_loop_call()

        return evaluate

    def _predict(self, original, signature):
        def predict(model, *args, **kwargs):
            bound = signature.bind(model, *args, **kwargs)
            batch = batch_of(bound.arguments, self.boot.config)
            t0 = time.perf_counter()
            try:
                return original(model, *args, **kwargs)
            finally:
                seconds = time.perf_counter() - t0
                with self.boot.record.edit() as record:
                    record.predicts.append(Predict(seconds, batch, _rows(bound.arguments.get("x"))))
                self.boot.after_loop_call()

        return predict


def install(keras, numpy, boot) -> None:
    KerasProbe(keras, numpy, boot).install()
