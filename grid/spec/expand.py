"""Expansion: the cartesian product of the axes, minus excludes, times repeats.

A trial's id is a hash of what it runs (a built-in's name; a user's command or function and the
hash of its script), its fully resolved config and its repeat index, so the same trial has the
same id in every run, whatever the key order in the spec, and an edited script makes new trials.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from grid.shared import Trial
from grid.spec.model import GridSpec


def canonical_config(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def trial_id(identity: str, config: dict[str, Any], repeat: int) -> str:
    key = f"{identity}\n{canonical_config(config)}\n{repeat}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _excluded(config: dict[str, Any], rules: list[dict[str, list[Any]]]) -> int | None:
    for i, rule in enumerate(rules):
        if all(config.get(k) in values for k, values in rule.items()):
            return i
    return None


@dataclass(frozen=True)
class Expansion:
    trials: list[Trial]
    combinations: int
    excluded: int
    unused_excludes: list[int]


def expand(spec: GridSpec) -> Expansion:
    """Every trial of the spec: the configs in grid order (axes as written), repeats outermost, so that
    the repeats of a config are interleaved with the other configs, never back to back: each repeat
    meets the machine in another state (clocks, temperature, caches, neighbours), and their spread
    says something about the next run's."""
    base = {**spec.workload_def.defaults(), **spec.params}
    names = list(spec.axes)
    configs: list[dict[str, Any]] = []
    used: set[int] = set()
    combos = excluded = 0
    for values in itertools.product(*(spec.axes[n] for n in names)):
        combos += 1
        config = {**base, **dict(zip(names, values))}
        rule = _excluded(config, spec.exclude)
        if rule is not None:
            used.add(rule)
            excluded += 1
            continue
        configs.append(config)
    trials: list[Trial] = []
    for repeat in range(spec.repeats):
        for config in configs:
            tid = trial_id(spec.identity, config, repeat)
            trials.append(Trial(tid, spec.workload, config, repeat, len(trials), exclusive=spec.exclusive))
    unused = [i for i in range(len(spec.exclude)) if i not in used]
    return Expansion(trials, combos, excluded, unused)
