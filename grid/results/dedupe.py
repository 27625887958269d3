"""At-least-once writes, exactly-once view: duplicate rows of an attempt dropped, and each trial's
latest attempt picked."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from grid.shared import TrialStatus


def _row_numbers(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.select(keys).append_column("_row", pa.array(range(table.num_rows), pa.int64()))


def _take_sorted(table: pa.Table, rows: pa.ChunkedArray) -> pa.Table:
    return table.take(pc.take(rows, pc.sort_indices(rows)))


def dedupe(table: pa.Table) -> pa.Table:
    """One row per (sweep, trial_id, attempt): at-least-once writes, exactly-once view.

    If an attempt has both a worker's row and the driver's `lost` row (the worker's file had been
    compacted away when the driver checked for it), the worker's row wins.
    """
    keys = ["sweep", "trial_id", "attempt"]
    if table.num_rows == 0:
        return table
    lost = pc.fill_null(pc.equal(table.column("status"), TrialStatus.LOST.value), False)
    order = (
        _row_numbers(table, keys)
        .append_column("_lost", lost)
        .sort_by([(k, "ascending") for k in keys] + [("_lost", "ascending")])
    )
    keep = order.group_by(keys, use_threads=False).aggregate([("_row", "first")])
    return table if keep.num_rows == table.num_rows else _take_sorted(table, keep.column("_row_first"))


def latest_attempts(table: pa.Table) -> pa.Table:
    """Each trial's highest attempt."""
    if table.num_rows == 0:
        return table
    order = _row_numbers(table, ["sweep", "trial_id", "attempt"]).sort_by(
        [("sweep", "ascending"), ("trial_id", "ascending"), ("attempt", "descending")]
    )
    best = order.group_by(["sweep", "trial_id"], use_threads=False).aggregate([("_row", "first")])
    return _take_sorted(table, best.column("_row_first"))
