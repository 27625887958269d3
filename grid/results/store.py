"""The results store: atomic per-attempt writes and reading, at a URI.

Where the results live is its backend (backend/: a local directory, `s3://bucket/prefix`, or any
pyarrow.fs URI), chosen once from the URI; what is where under it, its layout (layout.py):

    sweep=<name>/<trial_id>-<attempt>.parquet   one file per finished attempt
    sweep=<name>/_logs/<trial_id>-<attempt>.log the child's stdout and stderr
    sweep=<name>/_trials/<trial_id>/             the trial's own folder (GRID_TRIAL_DIR: trialdir.py)

A file appears whole or not at all: written under a temporary name that does not end in
`.parquet` (so globbing readers such as DuckDB never see it) and renamed; on object storage the
completed upload is the commit. Readers unify schemas permissively, drop duplicate
`(trial_id, attempt)` rows and, for the latest view, keep each trial's highest attempt.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from grid.errors import ResultsError
from grid.results.backend import Backend, open_backend
from grid.results.backend.retry import RETRY_S, Retry, Retrying
from grid.results.dedupe import dedupe, latest_attempts
from grid.results.layout import ROWS, Layout, attempt_of, sweep_of
from grid.results.row import Row
from grid.results.schema import rows_to_table
from grid.shared import is_sweep_name

log = logging.getLogger("grid")
_READ_THREADS = 8
_READ_TRIES = 3
_S = pa.string()


class ResultStore:
    """A results dataset at a URI. Safe for many concurrent writers: each writes its own files.
    Every call to its backend retries transient faults for `retry_s` seconds (backend/retry.py)."""

    def __init__(self, uri: str, retry_s: float = RETRY_S):
        self.uri, self.retry_s = uri, retry_s
        self.retry = Retry(retry_s)
        self.backend: Backend = Retrying(open_backend(uri), self.retry)
        self.layout = Layout(self.backend.root)
        self.unreadable: dict[str, str] = {}  # path -> why: files skipped by the readers

    def __reduce__(self) -> tuple[type[ResultStore], tuple[str, float]]:
        return (ResultStore, (self.uri, self.retry_s))

    # -- writing
    def write_row(self, row: Row, kinds: dict[str, type] | None = None) -> str:
        """Write one attempt's row as its own Parquet file, atomically. `kinds`: the config columns' types."""
        return self.write_encoded(row.sweep, row.trial_id, row.attempt, encode_row(row, kinds))

    def write_encoded(self, sweep: str, trial_id: str, attempt: int, data: bytes) -> str:
        """Write an encoded row (encode_row) under its attempt's name: whole or not at all."""
        final = self.layout.row(sweep, trial_id, attempt)
        self.backend.write(final, data)
        return final

    def create_row(self, row: Row, kinds: dict[str, type] | None = None) -> bool:
        """Write an attempt's row only if none exists yet; False if one does (it is left as it is)."""
        return self.create_encoded(row.sweep, row.trial_id, row.attempt, encode_row(row, kinds))

    def create_encoded(
        self, sweep: str, trial_id: str, attempt: int, data: bytes, folder: str | None = None, suffix: str = ROWS
    ) -> bool:
        """For rows that must be written once: the driver's `lost` row must not replace the row that
        a worker it gave up on wrote after all (the backend's `create`: once however many writers
        race, where it is `atomic_create`)."""
        folder = folder or self.layout.sweep(sweep)
        return self.backend.create(f"{folder}/{trial_id}-{attempt}{suffix}", data)

    def read_row(self, sweep: str, trial_id: str, attempt: int) -> Row | None:
        """One attempt's row from its own file, or None if it has none (or was compacted away)."""
        try:
            table = self._read_file(self.layout.row(sweep, trial_id, attempt))
        except FileNotFoundError:
            return None
        rows = table.to_pylist() if table is not None else []
        return Row.from_record(rows[0]) if rows else None

    # -- attempt numbers: each is claimed once, before its attempt starts, and never reused
    def claim_attempt(self, sweep: str, trial_id: str, attempt: int) -> bool:
        """Mark an attempt number as taken (False if it already was). An attempt cut off before it
        wrote a row (a killed driver) still holds its number: the next run starts the one after."""
        return self.create_encoded(sweep, trial_id, attempt, b"", folder=self.layout.attempts(sweep), suffix="")

    def claimed(self, sweep: str) -> dict[str, int]:
        """trial_id -> the highest attempt number claimed."""
        out: dict[str, int] = {}
        for entry in self.backend.entries(self.layout.attempts(sweep)):
            claim = attempt_of(entry.name) if entry.is_file else None
            if claim:
                out[claim[0]] = max(out.get(claim[0], -1), claim[1])
        return out

    def local_log_file(self, sweep: str, trial_id: str, attempt: int) -> str:
        """Where a worker on this machine writes the child's log (uploaded by `commit_log` if remote)."""
        here = self.backend.local_path(self.layout.log(sweep, trial_id, attempt))
        if here is not None:
            os.makedirs(os.path.dirname(here), exist_ok=True)
            return here
        scratch = self.backend.staging("logs", sweep)
        os.makedirs(scratch, exist_ok=True)
        return os.path.join(scratch, f"{trial_id}-{attempt}.log")

    def commit_log(self, local_file: str, sweep: str, trial_id: str, attempt: int) -> str:
        remote = self.layout.log(sweep, trial_id, attempt)
        if self.backend.local_path(remote) is None:
            self.backend.upload(local_file, remote)
            os.unlink(local_file)
        return self.backend.show(remote)

    # -- reading
    def sweeps(self) -> list[str]:
        names = (sweep_of(e.name) for e in self.backend.entries(self.layout.root) if not e.is_file)
        return sorted(name for name in names if name is not None)

    def files(self, sweep: str | None = None) -> list[str]:
        out = []
        for name in [sweep] if sweep else self.sweeps():
            entries = self.backend.entries(self.layout.sweep(name))
            out += sorted(e.path for e in entries if e.is_file and e.name.endswith(ROWS))
        return out

    def read(self, sweep: str | None = None) -> pa.Table:
        """Every attempt's row, schemas unified, duplicate `(trial_id, attempt)` rows dropped.

        Small per-attempt files and compacted ones (compact.py) are read alike. A file that a
        concurrent compaction deleted after the listing is covered by its merged file, so the
        listing is taken again.
        """
        for _ in range(_READ_TRIES):
            try:
                return dedupe(self.read_files(self.files(sweep)))
            except FileNotFoundError:
                continue
        raise ResultsError(
            f"files under {self.uri} kept disappearing while being read ({_READ_TRIES} tries); "
            f"a compaction may be running: try again when it ends"
        )

    def read_files(self, paths: list[str]) -> pa.Table:
        """These files' rows, not de-duplicated, schemas unified permissively: a column missing from
        older files reads as null, an int column that became float reads as float.
        Raises FileNotFoundError if one of them has gone since it was listed."""
        if not paths:
            return pa.table(
                {
                    "sweep": pa.array([], _S),
                    "trial_id": pa.array([], _S),
                    "attempt": pa.array([], pa.int32()),
                    "status": pa.array([], _S),
                }
            )
        tables = [t for t in self._read_many(paths) if t is not None]
        if not tables:
            return self.read_files([])
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ResultsError(
                f"cannot read the {len(paths)} result file(s) under {self.uri} together: {exc}. "
                "A column changed to an incompatible type between schema versions; "
                "rewrite the older files with that column cast, or read them apart (--sweep)"
            ) from None
        return table.combine_chunks()

    def _read_many(self, paths: list[str]) -> list[pa.Table | None]:
        """Opening a file costs more than its one row: many are read on threads (IO releases the GIL)."""
        if len(paths) < 2:
            return [self._read_file(p) for p in paths]
        with ThreadPoolExecutor(min(_READ_THREADS, len(paths))) as pool:
            return list(pool.map(self._read_file, paths))

    def _read_file(self, path: str) -> pa.Table | None:
        """A file's rows; None (reported, and kept in `unreadable`) when it is not a readable Parquet
        file, or its rows do not all belong to its sweep: one bad file must not hide every other
        row, and a row's `sweep` names files (a report's plots), so a crafted one is never read."""
        try:
            table = plain_columns(pq.ParquetFile(pa.BufferReader(self.backend.read(path))).read(use_threads=False))
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._skip(path, f"not a readable Parquet file ({reason})")
            return None
        foreign = foreign_sweeps(table, path)
        if foreign:
            self._skip(path, foreign)
            return None
        return table

    def _skip(self, path: str, reason: str) -> None:
        if path not in self.unreadable:
            log.warning("[grid] skipped %s: %s; move it out of the results folder", self.backend.show(path), reason)
        self.unreadable[path] = reason

    def latest(self, sweep: str | None = None) -> pa.Table:
        return latest_attempts(self.read(sweep))


def foreign_sweeps(table: pa.Table, path: str) -> str | None:
    """Why the file's rows are not its sweep's, or None: each row's `sweep` must be a sweep name
    and its folder's (`sweep=<name>`)."""
    folder = sweep_of(path.rsplit("/", 2)[-2]) if path.count("/") else None
    if "sweep" not in table.column_names:
        return None
    said = set(table.column("sweep").unique().to_pylist())
    bad = sorted(repr(s) for s in said if not is_sweep_name(s))
    if bad:
        return f"its rows say sweep {', '.join(bad[:3])}, not a sweep name"
    if folder is not None and said - {folder}:
        return (
            f"its rows say sweep {', '.join(sorted(repr(s) for s in said - {folder})[:3])}, not its folder's {folder!r}"
        )
    return None


def plain_columns(table: pa.Table) -> pa.Table:
    """A file's columns as gpu-grid's readers use them: `sweep` is dictionary-encoded in the files
    (so that it matches the `sweep=` folders that pyarrow, pandas and polars read as a partition)."""
    at = table.schema.get_field_index("sweep")
    if at >= 0 and pa.types.is_dictionary(table.schema.field(at).type):
        table = table.set_column(at, "sweep", table.column(at).cast(_S))
    return table


def encode_row(row: Row, kinds: dict[str, type] | None = None, known: dict[str, pa.DataType] | None = None) -> bytes:
    """One row as the bytes of its Parquet file: `kinds` types its config columns, `known` its
    sweep's metric columns (metric_types.py), a typed null where the row has no value."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows_to_table([row.record()], kinds, known), sink)
    return bytes(sink.getvalue().to_pybytes())
