"""The results store: atomic per-attempt writes and reading, at a URI.

Layout under the results URI (a local directory, `s3://bucket/prefix`, or any pyarrow.fs URI):

    sweep=<name>/<trial_id>-<attempt>.parquet   one file per finished attempt
    sweep=<name>/_logs/<trial_id>-<attempt>.log the child's stdout and stderr
    sweep=<name>/_trials/<trial_id>/             the trial's own folder (GRID_TRIAL_DIR: trialdir.py)

A file is written under a temporary name that does not end in `.parquet` (so globbing readers
such as DuckDB never see it) and renamed; on object storage the completed upload is the commit.
Readers unify schemas permissively, drop duplicate `(trial_id, attempt)` rows and, for the latest view,
keep each trial's highest attempt.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from grid.errors import ResultsError
from grid.results.dedupe import dedupe, latest_attempts
from grid.results.s3 import has_boto3, put_if_absent
from grid.results.schema import rows_to_table

log = logging.getLogger("grid")
_READ_THREADS = 8
_READ_TRIES = 3
_S = pa.string()


def _split(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        uri = os.path.abspath(uri)
    elif urllib.parse.urlsplit(uri).password:
        raise ResultsError(
            "the results URI carries credentials (user:secret@); they would end up in logs and "
            "reports. Drop them from the URI and give them the standard way: AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment, ~/.aws/credentials or an instance role"
        )
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ResultsError(f"cannot open results location {uri!r}: {exc}") from None


class ResultStore:
    """A results dataset at a URI. Safe for many concurrent writers: each writes its own files."""

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.root = _split(uri)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        self.unreadable: dict[str, str] = {}  # path -> why: files skipped by the readers

    def __reduce__(self) -> tuple[type[ResultStore], tuple[str]]:
        return (ResultStore, (self.uri,))

    # -- paths
    def sweep_dir(self, sweep: str) -> str:
        return f"{self.root}/sweep={sweep}"

    def row_path(self, sweep: str, trial_id: str, attempt: int) -> str:
        return f"{self.sweep_dir(sweep)}/{trial_id}-{attempt}.parquet"

    def log_path(self, sweep: str, trial_id: str, attempt: int) -> str:
        return f"{self.sweep_dir(sweep)}/_logs/{trial_id}-{attempt}.log"

    def display_path(self, path: str) -> str:
        return path if self.is_local else f"{self.uri.split('://', 1)[0]}://{path}"

    # -- writing
    def write_row(self, row: dict[str, Any], kinds: dict[str, type] | None = None) -> str:
        """Write one attempt's row as its own Parquet file, atomically. `kinds`: the config columns' types."""
        return self.write_encoded(row["sweep"], row["trial_id"], row["attempt"], encode_row(row, kinds))

    def write_encoded(self, sweep: str, trial_id: str, attempt: int, data: bytes) -> str:
        """Write an encoded row (encode_row) under its attempt's name: whole or not at all."""
        final = self.row_path(sweep, trial_id, attempt)
        if not self.is_local:
            with self.fs.open_output_stream(final) as out:  # the object appears whole when the upload completes
                out.write(data)
            return final
        os.makedirs(self.sweep_dir(sweep), exist_ok=True)
        durable_write(final, data)
        return final

    def create_row(self, row: dict[str, Any], kinds: dict[str, type] | None = None) -> bool:
        """Write an attempt's row only if none exists yet; False if one does (it is left as it is)."""
        return self.create_encoded(row["sweep"], row["trial_id"], row["attempt"], encode_row(row, kinds))

    def create_encoded(
        self, sweep: str, trial_id: str, attempt: int, data: bytes, folder: str | None = None, suffix: str = ".parquet"
    ) -> bool:
        """For rows that must be written once: the driver's `lost` row must not replace the row that
        a worker it gave up on wrote after all. A hard link on a local disk; on S3 a conditional
        PUT (If-None-Match: *) through boto3, as pyarrow's S3 filesystem cannot send one; on other
        filesystems a look before the write, which a concurrent writer can race.
        """
        folder = folder or self.sweep_dir(sweep)
        final = f"{folder}/{trial_id}-{attempt}{suffix}"
        if self.is_local:
            os.makedirs(folder, exist_ok=True)
            tmp = f"{folder}/.tmp-{uuid.uuid4().hex}"
            try:
                durable_write(tmp, data, replace=False)
                os.link(tmp, final)
                fsync_dir(folder)
                return True
            except FileExistsError:
                return False
            finally:
                _remove(tmp)
        if isinstance(self.fs, pafs.S3FileSystem) and has_boto3():
            return put_if_absent(self.uri, self.fs.region, final, data)
        if self.fs.get_file_info(final).type != pafs.FileType.NotFound:
            return False
        with self.fs.open_output_stream(final) as out:
            out.write(data)
        return True

    def read_row(self, sweep: str, trial_id: str, attempt: int) -> dict[str, Any] | None:
        """One attempt's row from its own file, or None if it has none (or was compacted away)."""
        try:
            table = self._read_file(self.row_path(sweep, trial_id, attempt))
        except FileNotFoundError:
            return None
        rows = table.to_pylist() if table is not None else []
        return rows[0] if rows else None

    # -- attempt numbers: each is claimed once, before its attempt starts, and never reused
    def attempts_dir(self, sweep: str) -> str:
        return f"{self.sweep_dir(sweep)}/_attempts"

    def claim_attempt(self, sweep: str, trial_id: str, attempt: int) -> bool:
        """Mark an attempt number as taken (False if it already was). An attempt cut off before it
        wrote a row (a killed driver) still holds its number: the next run starts the one after."""
        return self.create_encoded(sweep, trial_id, attempt, b"", folder=self.attempts_dir(sweep), suffix="")

    def claimed(self, sweep: str) -> dict[str, int]:
        """trial_id -> the highest attempt number claimed."""
        selector = pafs.FileSelector(self.attempts_dir(sweep), allow_not_found=True)
        out: dict[str, int] = {}
        for entry in self.fs.get_file_info(selector):
            trial_id, _, attempt = entry.base_name.rpartition("-")
            if entry.type == pafs.FileType.File and attempt.isdigit():
                out[trial_id] = max(out.get(trial_id, -1), int(attempt))
        return out

    @staticmethod
    def local_staging(kind: str, sweep: str) -> str:
        """This machine's folder for what an attempt writes before it goes to remote results."""
        return os.path.join(os.environ.get("TMPDIR", "/tmp"), f"gpu-grid-{kind}", sweep)

    def local_log_file(self, sweep: str, trial_id: str, attempt: int) -> str:
        """Where a worker on this machine writes the child's log (uploaded by `commit_log` if remote)."""
        path = self.log_path(sweep, trial_id, attempt)
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return path
        scratch = self.local_staging("logs", sweep)
        os.makedirs(scratch, exist_ok=True)
        return os.path.join(scratch, f"{trial_id}-{attempt}.log")

    def commit_log(self, local_file: str, sweep: str, trial_id: str, attempt: int) -> str:
        remote = self.log_path(sweep, trial_id, attempt)
        if not self.is_local:
            with open(local_file, "rb") as src, self.fs.open_output_stream(remote) as dst:
                dst.write(src.read())
            os.unlink(local_file)
        return self.display_path(remote)

    # -- reading
    def sweeps(self) -> list[str]:
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return []
        entries = self.fs.get_file_info(pafs.FileSelector(self.root))
        return sorted(
            e.base_name.split("=", 1)[1]
            for e in entries
            if e.type == pafs.FileType.Directory and e.base_name.startswith("sweep=")
        )

    def files(self, sweep: str | None = None) -> list[str]:
        out = []
        for name in [sweep] if sweep else self.sweeps():
            selector = pafs.FileSelector(self.sweep_dir(name), allow_not_found=True)
            out += sorted(
                e.path
                for e in self.fs.get_file_info(selector)
                if e.type == pafs.FileType.File and e.base_name.endswith(".parquet")
            )
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
        file: one bad file must not hide every other row."""
        try:
            with self.fs.open_input_file(path) as f:
                return plain_columns(pq.ParquetFile(f).read(use_threads=False))
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if path not in self.unreadable:
                log.warning(
                    "[grid] skipped %s: not a readable Parquet file (%s); move it out of the results folder",
                    self.display_path(path),
                    reason,
                )
            self.unreadable[path] = reason
            return None

    def latest(self, sweep: str | None = None) -> pa.Table:
        return latest_attempts(self.read(sweep))


def plain_columns(table: pa.Table) -> pa.Table:
    """A file's columns as gpu-grid's readers use them: `sweep` is dictionary-encoded in the files
    (so that it matches the `sweep=` folders that pyarrow, pandas and polars read as a partition)."""
    at = table.schema.get_field_index("sweep")
    if at >= 0 and pa.types.is_dictionary(table.schema.field(at).type):
        table = table.set_column(at, "sweep", table.column(at).cast(_S))
    return table


def encode_row(row: dict[str, Any], kinds: dict[str, type] | None = None) -> bytes:
    """One row as the bytes of its Parquet file."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows_to_table([row], kinds), sink)
    return bytes(sink.getvalue().to_pybytes())


def fsync_dir(path: str) -> None:
    """Make a rename or link in `path` durable (the directory entry itself)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def durable_write(path: str, data: bytes, replace: bool = True) -> None:
    """Write `data` to `path` durably: through a temporary name not ending in `.parquet` (globbing
    readers skip it), fsynced, renamed into place, the directory fsynced; nothing is left behind
    when any step fails. With replace=False `path` itself is the file written (a temporary one)."""
    folder = os.path.dirname(path) or "."
    tmp = f"{folder}/.tmp-{uuid.uuid4().hex}" if replace else path
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
            fsync_dir(folder)
    except BaseException:
        _remove(tmp)
        raise
