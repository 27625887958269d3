"""Hugging Face's `Trainer`, measured with no change to the script.

Every Trainer the script builds gets one more `TrainerCallback` (added once it is built, through
its public `add_callback`): it times each epoch, counts its optimizer steps, and counts the samples
of the batches `training_step` is given (the first dimension of the batch's first tensor, every
micro-batch of gradient accumulation included); an evaluation run inside an epoch (`eval_strategy:
steps`) is left out of its training time. At the end of training it keeps the log history: each
logged value's last value (`loss`, `eval_*`, `learning_rate`, ...) and, per epoch, the last value
logged in it. CUDA is synchronised at the edges of an epoch and of an evaluation only. The record
is written after each epoch.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

from gridtrial import current
from gridtrial.loops import batch_samples, numbers, sync
from gridtrial.protocol import Batch, BatchSource, Epoch, Fit, Loop

_NOT_METRICS = frozenset({"epoch", "step", "total_flos"})


def per_epoch(log_history: list[dict[str, Any]]) -> tuple[dict[str, list[float]], dict[str, float]]:
    """The log history as (each value's last per epoch, in epoch order; each value's last)."""
    by_epoch: dict[str, dict[int, float]] = {}
    last: dict[str, float] = {}
    for entry in log_history:
        epoch = entry.get("epoch")
        index = math.ceil(float(epoch) - 1e-9) if isinstance(epoch, (int, float)) else None
        for name, value in numbers({k: v for k, v in entry.items() if k not in _NOT_METRICS}).items():
            last[name] = value
            if index is not None:
                by_epoch.setdefault(name, {})[index] = value
    return {name: [values[i] for i in sorted(values)] for name, values in by_epoch.items()}, last


def probe_class(callback_base: type) -> type:
    class GridTrainerProbe(callback_base):  # type: ignore[misc,valid-type]
        """Epoch times, steps, samples and the log history of one `train`."""

        def __init__(self) -> None:
            self.fit: Fit | None = None
            self.samples = 0  # counted by the wrapped training_step
            self.counted = True
            self.eval_s = 0.0  # evaluation time inside the current epoch
            self._t0 = 0.0
            self._steps = 0
            self._samples0 = 0
            self.in_epoch = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            boot = current.bootstrap()
            if boot is None:
                return
            size = getattr(args, "train_batch_size", None)
            self.fit = Fit(Batch(size, BatchSource.CALL if size else BatchSource.UNKNOWN), loop=Loop.HUGGINGFACE)
            with boot.record.edit() as record:
                record.fits.append(self.fit)
            current.enter_loop()

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sync()
            self._t0, self._steps, self._samples0, self.eval_s = time.perf_counter(), 0, self.samples, 0.0
            self.counted, self.in_epoch = True, True

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._steps += 1
            boot = current.bootstrap()
            if boot is not None:
                boot.probe_step()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sync()
            seconds = time.perf_counter() - self._t0
            self.in_epoch = False
            boot = current.bootstrap()
            if self.fit is None or boot is None:
                return
            samples = self.samples - self._samples0 if self.counted else None
            epoch = Epoch(seconds, seconds - self.eval_s, self._steps, time.time(), boot.compile_counts(), samples)
            with boot.record.edit():
                self.fit.epochs.append(epoch)
            boot.after_loop_call()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            boot = current.bootstrap()
            if self.fit is None or boot is None:
                return
            history, last = per_epoch(state.log_history)
            with boot.record.edit():
                self.fit.history, self.fit.last = history, last
            self.fit = None
            current.leave_loop()
            boot.after_loop_call()

    return GridTrainerProbe


def _counting(probe: Any, training_step: Any) -> Any:
    @functools.wraps(training_step)
    def step(model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        size = batch_samples(inputs)
        if size is None:
            probe.counted = False
        else:
            probe.samples += size
        return training_step(model, inputs, *args, **kwargs)

    return step


def _timing(probe: Any, evaluate: Any) -> Any:
    @functools.wraps(evaluate)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if not probe.in_epoch:
            return evaluate(*args, **kwargs)
        sync()
        t0 = time.perf_counter()
        try:
            return evaluate(*args, **kwargs)
        finally:
            sync()
            probe.eval_s += time.perf_counter() - t0

    return timed


def install(module: Any) -> None:
    """Add the probe to every Trainer that `module` (transformers.trainer) builds."""
    trainer = module.Trainer
    if getattr(trainer, "_gpu_grid_measured", False):
        return
    probe_type = probe_class(module.TrainerCallback)
    original = trainer.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        probe = probe_type()
        self.add_callback(probe)
        self.training_step = _counting(probe, self.training_step)
        self.evaluate = _timing(probe, self.evaluate)

    trainer.__init__ = __init__
    trainer._gpu_grid_measured = True
