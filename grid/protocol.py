"""The worker <-> trial protocol: what the grid side and a trial's processes agree on.

One module for both sides, versioned: the environment variables gpu-grid sets for a trial, the
operator knobs (declared once, read when used, never at import), and (filled in below) the trial
document and the record each Python process of a trial leaves. Stdlib only, and it imports
nothing of `grid`: the trial side (tasks/site/gridtrial/protocol.py) loads this file by its path,
in any interpreter a trial runs (MXNet's own virtualenv too), without importing the `grid` package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

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
