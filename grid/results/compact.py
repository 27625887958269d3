"""Compaction: a sweep's many one-row files merged into one file of large row groups, with no
row lost or doubled in the readers' view, whenever the process dies.

The order of the steps is the whole argument:

1. list the sweep's files (per-attempt ones and earlier compacted ones) and read exactly those;
2. write their de-duplicated rows under a temporary name not ending in `.parquet` (readers skip it);
3. rename it to `compacted-<uuid>.parquet` (the backend's `write`; one PUT on S3): the commit;
   from here on every row is in that file;
4. delete the listed files. A death during 4 leaves files whose rows are also in the merged one:
   readers de-duplicate on `(sweep, trial_id, attempt)`, and the next compaction merges them away.

Files written after step 1 were not listed, so a sweep may keep running while it is compacted.
A running sweep does so itself (`Background`): every COMPACT_EVERY rows its one-row files are
merged into one more file, on a thread of the driver, leaving earlier merged files as they are; the
end of the run merges them all into one. Readers of a sweep, finished or killed, open a few files,
not one per attempt.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from grid.errors import ResultsError, UsageError
from grid.results.backend import TEMP_PREFIX
from grid.results.dedupe import dedupe
from grid.results.layout import is_compacted
from grid.results.schema import as_written
from grid.results.store import ResultStore

log = logging.getLogger("grid")
ROW_GROUP_ROWS = 65536
COMPACT_EVERY = 1000  # a running sweep merges its one-row files each time this many more were stored
_STALE_TMP_S = 3600.0

# Called with ("committed", merged_path), then ("deleted", path) per input removed; tests use it to
# stop the process at a chosen point.
Hook = Callable[[str, str], None]


@dataclass(frozen=True)
class Compaction:
    sweep: str
    files_before: int
    rows_read: int
    rows_written: int
    merged_path: str | None  # None: nothing to merge
    deleted: int
    seconds: float

    @property
    def duplicates_dropped(self) -> int:
        return self.rows_read - self.rows_written


def compact(store: ResultStore, sweep: str | None = None, hook: Hook | None = None) -> list[Compaction]:
    """Compact one sweep, or every sweep of the results."""
    sweeps = store.sweeps()
    if sweep is not None and sweep not in sweeps:
        raise UsageError(f"--sweep: received {sweep!r}, expected a sweep of {store.uri}: {', '.join(sweeps) or 'none'}")
    return [compact_sweep(store, name, hook) for name in ([sweep] if sweep else sweeps)]


def compact_sweep(store: ResultStore, sweep: str, hook: Hook | None = None, rows_only: bool = False) -> Compaction:
    """`rows_only`: merge the one-row files of attempts only, leaving merged files as they are."""
    started = time.perf_counter()
    _remove_stale_temporaries(store, sweep)
    files = store.files(sweep)
    if rows_only:
        files = [f for f in files if not is_compacted(f)]
    if len(files) < 2:
        return Compaction(sweep, len(files), 0, 0, None, 0, time.perf_counter() - started)
    try:
        table = store.read_files(files)
    except FileNotFoundError as exc:
        raise ResultsError(
            f"a file of sweep {sweep!r} vanished while compacting ({exc}); another compaction "
            f"is probably running on {store.uri}: let it finish"
        ) from None
    rows_read = table.num_rows
    table = dedupe(table)
    merged = _commit(store, sweep, table)
    _call(hook, "committed", merged)
    deleted = 0
    for path in files:
        if path in store.unreadable:
            continue  # not merged: it stays for someone to look at
        try:
            store.backend.delete(path)
            deleted += 1
        except FileNotFoundError:
            pass  # a concurrent compaction covered and removed it too
        _call(hook, "deleted", path)
    return Compaction(sweep, len(files), rows_read, table.num_rows, merged, deleted, time.perf_counter() - started)


def _commit(store: ResultStore, sweep: str, table: pa.Table) -> str:
    """Write the merged file so that it appears whole under its final name, or not at all (and,
    on a local disk, durably before any input is deleted)."""
    table = as_written(table)
    final = store.layout.compacted(sweep, uuid.uuid4().hex)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=ROW_GROUP_ROWS, compression="zstd")
    store.backend.write(final, sink.getvalue().to_pybytes())
    return final


def _call(hook: Hook | None, step: str, path: str) -> None:
    if hook is not None:
        hook(step, path)


def _remove_stale_temporaries(store: ResultStore, sweep: str) -> None:
    """Files that a killed compaction (or writer) never committed; readers ignore them, this tidies up."""
    now = time.time()
    for entry in store.backend.entries(store.layout.sweep(sweep)):
        stale = entry.mtime is not None and now - entry.mtime > _STALE_TMP_S
        if entry.is_file and entry.name.startswith(TEMP_PREFIX) and stale:
            store.backend.delete(entry.path)


class Background:
    """A running sweep's own compaction: `stored()` per row the store took; every `every` of them
    the one-row files written so far are merged on a thread (one at a time). Never the sweep's
    undoing: a failure is said, and the next merge takes those files."""

    def __init__(self, store: ResultStore, sweep: str, every: int = COMPACT_EVERY):
        self.store, self.sweep, self.every = store, sweep, every
        self._count = 0
        self._thread: threading.Thread | None = None

    def stored(self) -> None:
        self._count += 1
        if self.every <= 0 or self._count < self.every or (self._thread and self._thread.is_alive()):
            return
        self._count = 0
        self._thread = threading.Thread(target=self._merge, name="gpu-grid-compact", daemon=True)
        self._thread.start()

    def _merge(self) -> None:
        try:
            compact_sweep(self.store, self.sweep, rows_only=True)
        except Exception as exc:
            log.warning(
                "[grid] merging the rows of sweep %r so far failed (%s); the end of the run merges them",
                self.sweep,
                exc,
            )

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
