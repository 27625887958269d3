"""`search:` in a spec: find, per combination of the other axes, how far an axis can go before the
trial runs out of memory, by bisection in fresh processes instead of hand-picked values.

    search:
      smallest: memory_fraction     # or: largest: batch_size
      low: 0.001
      high: 1.0
      tolerance: 0.002              # stop when the ok/oom bracket is this narrow
      confirm: 2                    # re-run the found point in fresh processes, exclusive and timed
      probe_epochs: 1               # probes only look for the boundary: they may run shorter
      probe_steps: 3                # a probe of a loop gpu-grid hooks (Keras, Lightning, Hugging Face) ends
                                    # after this many optimizer steps, once its memory stopped growing (0: never)
      share_probes: true            # probes may share a GPU (by footprint and busy share); false: one at a time
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

MIN_TOLERANCE = 1e-5  # probed fractions are rounded to 6 decimals
SEARCHABLE = {"smallest": "memory_fraction", "largest": "batch_size"}
_KEYS = ("smallest", "largest", "low", "high", "tolerance", "confirm", "probe_epochs", "probe_steps", "share_probes")
PROBE_STEPS = 3


@dataclass(frozen=True)
class SearchSpec:
    direction: str  # smallest | largest
    axis: str  # memory_fraction | batch_size
    low: float
    high: float
    tolerance: float
    confirm: int = 2
    probe_epochs: int | None = None
    probe_steps: int = PROBE_STEPS  # 0: probes run as given
    share_probes: bool = True  # false: probes own their GPUs too

    @property
    def integer(self) -> bool:
        return self.axis == "batch_size"

    def probes(self) -> int:
        """How many probes a search takes at most: both ends, then bisection to the tolerance."""
        return 2 + max(0, math.ceil(math.log2((self.high - self.low) / self.tolerance)))


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def parse_search(raw: Any, taken: set[str], has_epochs: bool, problems: list[str]) -> SearchSpec | None:
    """`taken`: the params and axes the spec sets (the searched axis must not be one of them)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append(
            f"search: received {_show(raw)}, expected a mapping like {{smallest: memory_fraction, "
            f"low: 0.001, high: 1.0, tolerance: 0.002}}"
        )
        return None
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        problems.append(f"search: unknown key(s) {unknown}; valid keys are {sorted(_KEYS)}")
    given = [d for d in SEARCHABLE if d in raw]
    if len(given) != 1:
        problems.append(
            f"search: give one of smallest: memory_fraction or largest: batch_size; received "
            f"{', '.join(given) or 'neither'}"
        )
        return None
    direction = given[0]
    axis = raw[direction]
    if axis != SEARCHABLE[direction]:
        problems.append(
            f"search.{direction}: received {_show(axis)}, expected {SEARCHABLE[direction]} (a search "
            f"looks for the {direction} {SEARCHABLE[direction]} that does not run out of memory)"
        )
        return None
    if axis in taken:
        problems.append(
            f"search.{direction}: {axis} is also set in params or axes; the search chooses its values, "
            f"so leave it out of both"
        )
    integer = axis == "batch_size"
    kind, bound = (int, 1) if integer else ((int, float), 0)
    values = {}
    for key, default in (("low", None), ("high", None), ("tolerance", 1 if integer else None)):
        value = raw.get(key, default)
        if not isinstance(value, kind) or isinstance(value, bool) or value <= bound - (1 if integer else 0):
            what = "an integer >= 1" if integer else "a number > 0"
            problems.append(f"search.{key}: received {_show(value)}, expected {what}")
            return None
        values[key] = value
    low, high, tolerance = values["low"], values["high"], values["tolerance"]
    if not integer and high > 1:
        problems.append(f"search.high: received {_show(high)}, expected a memory_fraction <= 1")
    if low >= high:
        problems.append(f"search: low {_show(low)} is not below high {_show(high)}")
    elif not integer and tolerance < MIN_TOLERANCE:
        problems.append(f"search.tolerance: received {_show(tolerance)}, expected at least {MIN_TOLERANCE}")
    elif tolerance >= high - low:
        problems.append(
            f"search.tolerance: received {_show(tolerance)}, wider than the range {_show(low)}.."
            f"{_show(high)}; expected less than {_show(high - low)}"
        )
    confirm = raw.get("confirm", 2)
    if not isinstance(confirm, int) or isinstance(confirm, bool) or confirm < 0:
        problems.append(f"search.confirm: received {_show(confirm)}, expected an integer >= 0")
    probe_epochs = raw.get("probe_epochs")
    if probe_epochs is not None:
        if not isinstance(probe_epochs, int) or isinstance(probe_epochs, bool) or probe_epochs < 1:
            problems.append(f"search.probe_epochs: received {_show(probe_epochs)}, expected an integer >= 1")
        elif not has_epochs:
            problems.append("search.probe_epochs: the trials have no epochs parameter to shorten")
    share = raw.get("share_probes", True)
    if not isinstance(share, bool):
        problems.append(f"search.share_probes: received {_show(share)}, expected true or false")
    probe_steps = raw.get("probe_steps", PROBE_STEPS)
    if not isinstance(probe_steps, int) or isinstance(probe_steps, bool) or probe_steps < 0:
        problems.append(f"search.probe_steps: received {_show(probe_steps)}, expected an integer >= 0 (0: never)")
    return SearchSpec(
        direction,
        axis,
        float(low) if not integer else low,
        float(high) if not integer else high,
        float(tolerance) if not integer else tolerance,
        confirm,
        probe_epochs,
        probe_steps,
        share is not False,
    )
