"""PyTorch Lightning's `Trainer.fit`, measured with no change to the script (`lightning` and
`pytorch_lightning` alike).

Every Trainer the script builds gets one more callback: it times each training epoch and the
validation run inside it (left out of the training time), counts the epoch's optimizer steps and
the samples of its batches (the first dimension of the batch's first tensor), and keeps every value
the module logged (`self.log`: the trainer's callback metrics at the end of each epoch) as a
per-epoch series. CUDA is synchronised only at the edges of an epoch and of a validation run, where
Lightning waits anyway. The record is written after each epoch, so a trial cut off mid-fit keeps
the epochs it finished. Each process of a DDP run measures its own (rank 0's epochs are the trial's).
"""

from __future__ import annotations

import functools
import time
from typing import Any

from gridtrial import current
from gridtrial.loops import batch_samples, numbers, sync
from gridtrial.protocol import Batch, BatchSource, Epoch, Fit, Loop


def probe_class(callback_base: type) -> type:
    class GridLightningProbe(callback_base):  # type: ignore[misc,valid-type]
        """Epoch and validation times, steps, samples and the logged values of one fit."""

        def __init__(self) -> None:
            super().__init__()
            self.fit: Fit | None = None
            self._t0 = self._v0 = 0.0
            self._val = 0.0
            self._steps = self._samples = 0
            self._counted = True  # every batch of the epoch so far showed its size

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            boot = current.bootstrap()
            if boot is None:
                return
            self.fit = Fit(Batch(None, BatchSource.UNKNOWN), loop=Loop.LIGHTNING)
            with boot.record.edit() as record:
                record.fits.append(self.fit)
            current.enter_loop()

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            self._keep(trainer)

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            self._keep(trainer)

        def _keep(self, trainer: Any) -> None:
            boot = current.bootstrap()
            if self.fit is None or boot is None:
                return
            with boot.record.edit():
                self.fit.last.update(numbers(trainer.callback_metrics))
            self.fit = None
            current.leave_loop()
            boot.after_loop_call()

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            sync()
            self._val, self._steps, self._samples, self._counted = 0.0, 0, 0, True
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self._steps += 1
            size = batch_samples(batch)
            if size is None:
                self._counted = False
            else:
                self._samples += size
            boot = current.bootstrap()
            if boot is not None:
                boot.probe_step()

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking:
                sync()
                self._v0 = time.perf_counter()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if not trainer.sanity_checking and self._v0:
                sync()
                self._val += time.perf_counter() - self._v0
                self._v0 = 0.0

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            sync()
            seconds = time.perf_counter() - self._t0
            boot = current.bootstrap()
            if self.fit is None or boot is None:
                return
            samples = self._samples if self._counted and self._steps else None
            epoch = Epoch(seconds, seconds - self._val, self._steps, time.time(), boot.compile_counts(), samples)
            with boot.record.edit():
                self.fit.epochs.append(epoch)
                if samples and self._steps:
                    self.fit.batch = Batch(round(samples / self._steps), BatchSource.DATASET)
                for name, value in numbers(trainer.callback_metrics).items():
                    self.fit.history.setdefault(name, []).append(value)
            boot.after_loop_call()

    return GridLightningProbe


def install(module: Any) -> None:
    """Add the probe to every Trainer `module` (lightning.pytorch or pytorch_lightning) builds."""
    trainer = module.Trainer
    if getattr(trainer, "_gpu_grid_measured", False):
        return
    probe = probe_class(module.Callback)
    original = trainer.__init__

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        given = kwargs.get("callbacks")
        callbacks = [] if given is None else list(given) if isinstance(given, (list, tuple)) else [given]
        kwargs["callbacks"] = [probe(), *callbacks]
        original(self, *args, **kwargs)

    trainer.__init__ = __init__
    trainer._gpu_grid_measured = True
