"""How much a config's metric moves between runs of unchanged code, and whether a change stands out.

The repeats of one run share that run's conditions (the GPU's clocks and temperature, the process's
compile, the node's neighbours), so their spread says little about the next run. The noise of a
config is measured across a history of accepted runs instead: the median of each run's repeats
(the run median), and the robust spread of those run medians (1.4826 x their median absolute
deviation: a standard deviation that one odd night cannot inflate). The repeats within runs are a
second source: the pooled robust spread of a run's repeats, as the noise of a median of that many.
With fewer than `MIN_RUNS` baseline runs the spread between runs is unknown; the within-run spread
stands in, doubled (runs differ by more than the repeats of one run), the comparison says so, and a
change beyond it is `noisy` (grid/reports/compare.py), not a regression.

The run being judged is a third source, on its own: the spread of its own repeats, as the noise of
its median. A run whose repeats scatter wider than those of the history (its machine got busier
half-way, say) has a median that much less certain, however quiet the history was: on an H100, a
night of unchanged ResNet-50 code whose repeats spread 2.22-2.48 s moved +12% from a history whose
run medians lay within 3%, and its re-run +6%: a regression by the history's noise alone.

A change must exceed both the threshold and the band (`Z` noises) to be flagged; where the band is
wider than the threshold, a change inside it is `noisy`: the data cannot tell a threshold-sized
change from noise.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

MIN_RUNS = 3  # baseline runs needed to measure the spread between runs
Z = 3.0  # noises a change must exceed to stand out
MAD_SD = 1.4826  # median absolute deviation -> standard deviation of a normal distribution
SINGLE_RUN_FACTOR = 2.0  # the within-run noise, stretched where the spread between runs is unknown


def mad_sd(values: list[float]) -> float:
    """A robust standard deviation: 1.4826 x the median absolute deviation (0 for fewer than 2)."""
    if len(values) < 2:
        return 0.0
    mid = statistics.median(values)
    return MAD_SD * statistics.median(abs(v - mid) for v in values)


@dataclass(frozen=True)
class Noise:
    """A config's noise over its baseline runs, in percent of the baseline's center."""

    runs: int  # baseline runs that measured the config
    center: float  # the median of the run medians
    between_pct: float | None  # spread of the run medians (None: fewer than MIN_RUNS runs)
    within_pct: float  # pooled spread of the repeats, as the noise of a median of `repeats`
    repeats: int  # repeats per run (the current run's)
    band_pct: float  # the change that stands out: Z x the largest noise
    own_pct: float = 0.0  # the spread of the current run's own repeats, as the noise of its median

    @property
    def history_pct(self) -> float:
        """The noise the history shows (history_noise)."""
        return history_noise(self.between_pct, self.within_pct)

    @property
    def own_widest(self) -> bool:
        """Whether the current run's own repeats set the band (they spread wider than the history's)."""
        return self.own_pct > self.history_pct

    @property
    def source(self) -> str:
        if self.own_widest:
            return "the repeats of the run judged"
        if self.between_pct is None:
            return f"the repeats of {self.runs} run{'s' if self.runs != 1 else ''} (x{SINGLE_RUN_FACTOR:g})"
        return f"{self.runs} runs" if self.between_pct >= self.within_pct else f"the repeats within {self.runs} runs"

    def settle(self, threshold: float) -> str:
        """What would bring the band under the threshold."""
        if self.between_pct is None:
            return f"more accepted runs in the history ({self.runs} of the {MIN_RUNS} needed to measure it)"
        if self.own_widest:
            return (
                "a re-run on a quieter machine (this run's repeats spread wider than the history's), or more repeats "
                f"(about {self._repeats_for(self.own_pct, threshold)} per config)"
            )
        if self.within_pct >= self.between_pct and self.within_pct > 0:
            need = self._repeats_for(self.within_pct, threshold)
            return f"more repeats (about {need} per config) or longer steady windows (more steps per epoch)"
        return (
            "longer steady windows (more steps per epoch: runs differ by more than their repeats), a quieter "
            "machine (no neighbours, fixed clocks), or a threshold above the band"
        )

    def _repeats_for(self, noise_pct: float, threshold: float) -> int:
        """Repeats that would bring Z x a median's noise of `noise_pct` under the threshold."""
        return math.ceil(self.repeats * (Z * noise_pct / max(threshold, 1e-9)) ** 2)


def history_noise(between_pct: float | None, within_pct: float) -> float:
    """The noise a history shows: between runs, or within them where that is wider (doubled where
    the spread between runs is unknown)."""
    if between_pct is None:
        return within_pct * SINGLE_RUN_FACTOR
    return max(between_pct, within_pct)


def median_noise_pct(sd: float, n: int, scale: float) -> float:
    """The noise of a median of n values whose spread is `sd` (1.2533 x sd / sqrt(n)), in percent of
    `scale`."""
    return 100 * 1.2533 * sd / math.sqrt(max(n, 1)) / (abs(scale) or 1.0)


def noise_of(run_values: list[list[float]], current: list[float]) -> Noise | None:
    """The noise of one config from each baseline run's ok values (runs with none left out); the
    current run's repeats join the within-run source, and count on their own: the band is Z x the
    largest of the spread between runs, within runs, and of the current run's own repeats."""
    runs = [sorted(v) for v in run_values if v]
    if not runs:
        return None
    repeats = max(len(current), 1)
    medians = [statistics.median(v) for v in runs]
    center = statistics.median(medians)
    scale = abs(center) or 1.0
    spreads = [mad_sd(v) for v in [*runs, current] if len(v) > 1]
    per_repeat = statistics.median(spreads) if spreads else 0.0
    within = median_noise_pct(per_repeat, repeats, scale)
    between = 100 * mad_sd(medians) / scale if len(runs) >= MIN_RUNS else None
    own = median_noise_pct(mad_sd(current), len(current), scale)
    return Noise(len(runs), center, between, within, repeats, Z * max(history_noise(between, within), own), own)


def _cost(values: list[float]) -> float:
    mid = statistics.median(values)
    return sum(abs(v - mid) for v in values)


def change_point(values: list[float], band_pct: float) -> int | None:
    """Where a sequence of run medians moved: the split into two segments that fits them best (least
    absolute deviation from each segment's median); the index of the first run after it, if the two
    medians differ by more than the band; None if nothing moved."""
    if len(values) < 2:
        return None
    k = min(range(1, len(values)), key=lambda i: (_cost(values[:i]) + _cost(values[i:]), -i))
    before, after = statistics.median(values[:k]), statistics.median(values[k:])
    moved = abs(after - before) / abs(before) * 100 if before else math.inf
    return k if moved > band_pct else None
