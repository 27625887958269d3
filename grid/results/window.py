"""The measurement window of a timing: seconds and steps of the steady epochs (those after the first
of each fit, which compiles). A window under `MIN_WINDOW_S` seconds or `MIN_STEPS` steps is too short
to time: the clock's resolution, one stall or one garbage collection is a large part of it. The row
says so (`window_short`) and `grid compare` calls such a config `noisy` instead of comparing it."""

from __future__ import annotations

from typing import Any

MIN_WINDOW_S = 1.0
MIN_STEPS = 20
WINDOW_METRICS = ("steady_epoch_s", "images_per_s", "energy_per_epoch_j", "joules_per_image")


def is_short(window_s: float | None, steps: int | None) -> bool | None:
    """Too short to time (None: no steady window measured)."""
    if window_s is None:
        return None
    return window_s < MIN_WINDOW_S or (steps is not None and steps < MIN_STEPS)


def window_of(row: dict[str, Any]) -> tuple[float | None, int | None]:
    """A row's steady window: its columns, else its epoch times after the first (older rows)."""
    if row.get("steady_window_s") is not None:
        return row["steady_window_s"], row.get("steady_steps")
    times = row.get("epoch_times") or []
    return (float(sum(times[1:])), None) if len(times) > 1 else (None, None)


def why_short(window_s: float, steps: int | None) -> str:
    steps_text = f", {steps} steps" if steps is not None else ""
    return (
        f"steady window {window_s:.2g} s{steps_text}: under {MIN_WINDOW_S:g} s or {MIN_STEPS} steps is too short "
        f"to time (more steps per epoch, or more epochs, would lengthen it)"
    )
