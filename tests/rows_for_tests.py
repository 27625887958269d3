"""Rows as gpu-grid builds them (grid/trial/rows.py), with the columns a test gives set by name."""

from __future__ import annotations

from typing import Any

from grid.results.row import PLACE, Row
from grid.shared import Placement, Trial, TrialStatus
from grid.spec.model import GridSpec
from grid.trial import rows


def make_row(
    spec: GridSpec,
    trial: Trial,
    attempt: int = 0,
    status: str = "ok",
    placement: Placement | None = None,
    **columns: Any,
) -> Row:
    row = rows.begin(spec, trial, attempt, placement, None)
    row.outcome.status = TrialStatus(status)
    for name, value in columns.items():
        if name in PLACE:
            row.set(name, value)
        else:
            row.metrics.values[name] = value
    return row
