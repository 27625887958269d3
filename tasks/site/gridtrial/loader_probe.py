"""A plain PyTorch loop's epochs, found with no change to the script: a full pass over a torch
`DataLoader` iterated with gradients enabled is one epoch.

Each `iter(loader)` outside a framework's own loop (Keras, Lightning, Hugging Face measure theirs)
is followed: from the iterator's creation to its StopIteration, with its batches and their samples
counted. A pass that ends early (a `break`) is no epoch; neither is one run with gradients off (a
test pass under `torch.no_grad()`). Each loader keeps its own passes (a `Fit` of loop `dataloader`,
in the order the loaders were first used); the grid side takes the epochs of the one that trained
on the most samples and says so in the row's notes. The GPU is synchronised at each end of a pass.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from gridtrial import current
from gridtrial.loops import batch_samples, sync
from gridtrial.protocol import Batch, BatchSource, Epoch, Fit, Loop


class _Pass:
    """A DataLoader's iterator, followed; anything else is its own (attributes, len)."""

    def __init__(self, inner: Any, probe: LoaderProbe, loader: Any, torch: Any):
        self._inner, self._probe, self._loader, self._torch = inner, probe, loader, torch
        self._t0 = time.perf_counter()
        self._steps = self._samples = 0
        self._counted = True
        self._grad: bool | None = None

    def __iter__(self) -> _Pass:
        return self

    def __next__(self) -> Any:
        if self._grad is None:
            self._grad = bool(self._torch.is_grad_enabled())
        try:
            batch = next(self._inner)
        except StopIteration:
            if self._grad and self._steps:
                sync()
                seconds = time.perf_counter() - self._t0
                self._probe.passed(self._loader, seconds, self._steps, self._samples if self._counted else None)
            raise
        self._steps += 1
        size = batch_samples(batch)
        if size is None:
            self._counted = False
        else:
            self._samples += size
        return batch

    def __len__(self) -> int:
        return len(self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class LoaderProbe:
    def __init__(self, torch: Any):
        self.torch = torch
        self.fits: weakref.WeakKeyDictionary[Any, Fit] = weakref.WeakKeyDictionary()

    def passed(self, loader: Any, seconds: float, steps: int, samples: int | None) -> None:
        boot = current.bootstrap()
        if boot is None:
            return
        with boot.record.edit() as record:
            fit = self.fits.get(loader)
            if fit is None:
                size = getattr(loader, "batch_size", None)
                fit = Fit(Batch(size, BatchSource.DATASET if size else BatchSource.UNKNOWN), loop=Loop.DATALOADER)
                self.fits[loader] = fit
                record.fits.append(fit)
            fit.epochs.append(Epoch(seconds, seconds, steps, time.time(), boot.compile_counts(), samples))
        boot.after_loop_call()

    def install(self, module: Any) -> None:
        loader_type = module.DataLoader
        if getattr(loader_type, "_gpu_grid_measured", False):
            return
        original = loader_type.__iter__
        probe = self

        def __iter__(loader: Any) -> Any:
            inner = original(loader)
            if current.in_loop():  # a framework's loop measures its own epochs
                return inner
            sync()
            return _Pass(inner, probe, loader, probe.torch)

        loader_type.__iter__ = __iter__
        loader_type._gpu_grid_measured = True


def install(torch: Any, module: Any) -> None:
    """Follow the passes of every DataLoader (`module`: torch.utils.data.dataloader)."""
    LoaderProbe(torch).install(module)
