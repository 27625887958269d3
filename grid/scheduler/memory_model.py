"""A search's memory model: where the out-of-memory boundary should be, from what the probes so far
used, so that the next probes go there instead of halving the range.

- `largest: batch_size`: the memory a trial needs is linear in its batch (activations and their
  gradients grow with it; weights, optimizer state and the runtime do not): need(b) = a + k x b,
  fitted to the probes that trained. The boundary is the largest b whose need fits the card (times
  the combination's memory_fraction, if it has one).
- `smallest: memory_fraction`: the memory a trial needs does not depend on its cap (until the cap is
  too small): the boundary is the smallest fraction of the card that holds the framework's peak
  (the smallest peak of a run that trained: one that compiled cold also counts its compiler's scratch).

The need of a trial is NVML's peak per GPU for a batch (what the device ran out of), the framework's
own peak counter for a fraction (NVML shows what a capped framework preallocated, not what it
needed); either where the other is missing. A model that the outcomes contradict (an OOM where it
said the trial fits, a trial that fit where it said it would not) is not used again by the search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from grid.shared import TrialStatus


@dataclass(frozen=True)
class Seen:
    """A finished step of a search: how it ended and what it used."""

    status: TrialStatus
    value: float | int | None  # the searched axis's value (None: the uncapped reference)
    peak_mib: float | None = None  # NVML's peak per GPU
    framework_mib: float | None = None  # the framework's own peak counter
    card_mib: float | None = None  # the GPU's memory

    @property
    def ok(self) -> bool:
        return self.status is TrialStatus.OK


def _line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least squares a + k x over points of at least two distinct x; None where it cannot be fitted."""
    xs = [x for x, _ in points]
    if len(set(xs)) < 2:
        return None
    n = len(points)
    mean_x, mean_y = sum(xs) / n, sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    k = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    return mean_y - k * mean_x, k


@dataclass(frozen=True)
class BatchModel:
    """need(b) = a + k x b against the memory a trial may use (`capacity`)."""

    a: float
    k: float
    capacity: float

    def boundary(self) -> int | None:
        """The largest batch that fits, or None where the line says nothing (no growth)."""
        if self.k <= 0:
            return None
        return math.floor((self.capacity - self.a) / self.k)


def batch_model(seen: list[Seen], fraction: float | None) -> BatchModel | None:
    """The line through the ok probes' needs, and what they may use: the card (x the fraction)."""
    cards = [s.card_mib for s in seen if s.card_mib]
    points = []
    for s in seen:
        need = s.peak_mib if s.peak_mib is not None else s.framework_mib
        if s.ok and s.value is not None and need is not None:
            points.append((float(s.value), need))
    line = _line(points)
    if line is None or not cards:
        return None
    return BatchModel(line[0], line[1], cards[0] * (fraction if fraction is not None else 1.0))


def first_guess(low: int, need_at_low: float, capacity: float) -> int:
    """A second batch to probe after the first: one that fits for certain if need is linear with a
    non-negative intercept (need(b) <= need(low) x b / low), filling about half the memory."""
    return max(low + 1, math.floor(low * capacity / need_at_low * 0.5))


def fraction_boundary(seen: list[Seen]) -> float | None:
    """The smallest fraction of the card that holds the smallest framework peak of a run that
    trained (each such run shows that its peak was enough), or None where none says. Not the
    largest: a run that compiled cold counts its compiler's scratch too (an H100's jax ResNet-50
    reference: 3,152 MiB where every run from the compile cache, capped or not, peaked at 464)."""
    needs = [n for s in seen if s.ok and (n := s.framework_mib if s.framework_mib is not None else s.peak_mib)]
    cards = [s.card_mib for s in seen if s.card_mib]
    if not needs or not cards:
        return None
    return min(needs) / cards[0]


def contradicted(boundary: float, seen: list[Seen], largest: bool, slack: float = 0.0) -> bool:
    """Whether an outcome so far says the predicted boundary is wrong by more than `slack`: an OOM
    that far on the side where the model says trials fit, or a trial that fit that far on the side
    where it says none does. (Within the slack the search steps from the outcomes: a card runs out
    a little before it is full, and memory is a little less than linear at large batches.)"""
    for s in seen:
        if s.value is None or s.status not in (TrialStatus.OK, TrialStatus.OOM):
            continue
        margin = (boundary - s.value) if largest else (s.value - boundary)  # > 0: the model says it fits
        if (not s.ok and margin > slack) or (s.ok and -margin > slack):
            return True
    return False
