"""At-least-once writes, exactly-once view: duplicate rows of an attempt dropped, and each trial's
latest attempt picked.

Sorts and compares neighbours with Arrow compute functions, never a Python value turned into an
Arrow one nor a `group_by` (pyarrow imports pandas for either where it is installed: half a second of
every `grid report` and `grid status`, for nothing)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from grid.shared import TrialStatus

KEYS = ["sweep", "trial_id", "attempt"]


def _firsts(table: pa.Table, keys: list[str], order: list[tuple[str, str]]) -> pa.Array:
    """The row numbers of the first row of each run of equal `keys` once `table` is sorted by `order`
    (which starts with `keys`; a stable sort, so ties keep the table's order)."""
    rows = pc.sort_indices(table, sort_keys=order)
    if len(rows) < 2:
        return rows
    changed = None
    for key in keys:
        column = pc.take(table.column(key), rows)
        step = pc.not_equal(column.slice(1), column.slice(0, len(column) - 1))
        changed = step if changed is None else pc.or_kleene(changed, step)
    assert changed is not None
    first = pc.is_valid(rows.slice(0, 1))  # [true]: the first row starts a run
    steps = changed.chunks if isinstance(changed, pa.ChunkedArray) else [changed]
    return pc.filter(rows, pa.concat_arrays([first, *steps]))


def _take_sorted(table: pa.Table, rows: pa.Array) -> pa.Table:
    return table.take(pc.take(rows, pc.sort_indices(rows)))


def dedupe(table: pa.Table) -> pa.Table:
    """One row per (sweep, trial_id, attempt): at-least-once writes, exactly-once view.

    If an attempt has both a worker's row and the driver's `lost` row (the worker's file had been
    compacted away when the driver checked for it), the worker's row wins.
    """
    if table.num_rows == 0:
        return table
    status = table.column("status")
    # a regex option, not a scalar to compare with (see the module's note); a null status is not lost
    lost = pc.and_kleene(pc.is_valid(status), pc.match_substring_regex(status, f"^{TrialStatus.LOST.value}$"))
    keyed = table.select(KEYS).append_column("_lost", lost)
    keep = _firsts(keyed, KEYS, [(k, "ascending") for k in KEYS] + [("_lost", "ascending")])
    return table if len(keep) == table.num_rows else _take_sorted(table, keep)


def latest_attempts(table: pa.Table) -> pa.Table:
    """Each trial's highest attempt."""
    if table.num_rows == 0:
        return table
    order = [("sweep", "ascending"), ("trial_id", "ascending"), ("attempt", "descending")]
    return _take_sorted(table, _firsts(table.select(KEYS), ["sweep", "trial_id"], order))
