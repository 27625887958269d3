"""The results dataset: the Arrow schema, atomic per-attempt writes, reading and de-duplication.

Layout under the results URI (a local directory, `s3://bucket/prefix`, or any pyarrow.fs URI):

    sweep=<name>/<trial_id>-<attempt>.parquet   one file per finished attempt
    sweep=<name>/_logs/<trial_id>-<attempt>.log the child's stdout and stderr

A file is written under a temporary name that does not end in `.parquet` (so globbing readers
such as DuckDB never see it) and renamed; on object storage the completed upload is the commit.
Readers unify schemas permissively, drop duplicate `(trial_id, attempt)` rows and, for the latest view,
keep each trial's highest attempt.
"""

from __future__ import annotations

import os
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from grid.errors import ResultsError

# 2: user targets (target, command, workdir, script), open metric columns, notes, processes
SCHEMA_VERSION = 2
_READ_THREADS = 8
_READ_TRIES = 3

_F = pa.float64()
_S = pa.string()
_TS = pa.timestamp("ms", tz="UTC")

BASE_FIELDS: list[pa.Field] = [
    pa.field("schema_version", pa.int32()),
    pa.field("sweep", _S),
    pa.field("trial_id", _S),
    pa.field("attempt", pa.int32()),
    pa.field("repeat", pa.int32()),
    pa.field("workload", _S),
    pa.field("target", _S),  # "function pkg.module:train" or "command python train.py ..." (placeholders)
    pa.field("command", _S),  # the command this attempt ran, placeholders filled
    pa.field("workdir", _S),
    pa.field("script", _S),  # the file(s) the target runs, as hashed into the trial id
    pa.field("script_sha256", _S),
    pa.field("config_json", _S),
    pa.field("status", _S),
    pa.field("exit_code", pa.int32()),
    pa.field("signal", _S),
    pa.field("error_type", _S),
    pa.field("error_message", _S),
    pa.field("error_tail", _S),
    pa.field("notes", pa.list_(_S)),  # what the row wants known: unmatched metric patterns, refused names...
    pa.field("epoch_times", pa.list_(_F)),
    pa.field("first_epoch_s", _F),
    pa.field("steady_epoch_s", _F),
    pa.field("images_per_s", _F),
    pa.field("global_batch", pa.int64()),
    pa.field("import_s", _F),
    pa.field("fit_calls", pa.int32()),
    pa.field("processes", pa.int32()),  # Python processes of the trial that left a record
    pa.field("metric_goals_json", _S),  # metric column -> max | min (declared or known from its name)
    pa.field("series_json", _S),  # metric -> its per-epoch values (History, patterns matched once per epoch)
    pa.field("wall_s", _F),
    pa.field("peak_rss_mib", _F),
    pa.field("memory_limit_mib", pa.int64()),
    # GPU memory, from NVML outside the child and the framework's own counters inside it
    pa.field("gpu_mem_peak_mib", _F),
    pa.field("gpu_mem_peak_per_gpu_mib", pa.list_(_F)),
    pa.field("gpu_device_mem_peak_mib", _F),
    pa.field("gpu_mem_method", _S),
    pa.field("framework_peak_mib", _F),
    pa.field("framework_mem_json", _S),
    pa.field("memory_cap_method", _S),
    pa.field("gpu_name", _S),
    pa.field("gpu_total_mib", _F),
    pa.field("driver_version", _S),
    pa.field("cuda_version", _S),
    # where and with what it ran
    pa.field("host", _S),
    pa.field("node_id", _S),
    pa.field("workers", pa.list_(_S)),
    pa.field("gpu_ids", pa.list_(_S)),
    pa.field("exclusive", pa.bool_()),
    pa.field("framework", _S),
    pa.field("framework_version", _S),
    pa.field("versions_json", _S),
    pa.field("data", _S),
    pa.field("data_note", _S),
    pa.field("images_per_epoch", pa.int64()),
    pa.field("parallelism", _S),
    pa.field("child_env_json", _S),
    pa.field("timeout_s", _F),
    pa.field("queued_at", _TS),
    pa.field("dispatched_at", _TS),
    pa.field("started_at", _TS),
    pa.field("ended_at", _TS),
    pa.field("log_path", _S),
    pa.field("grid_version", _S),
]
BASE_NAMES = frozenset(f.name for f in BASE_FIELDS)
_BASE_TYPES = {f.name: f.type for f in BASE_FIELDS}
_ARROW_OF = {int: pa.int64(), float: _F, str: _S, bool: pa.bool_()}


def value_type(value: Any) -> pa.DataType:
    """The column type of a value outside the base schema (a metric or an untyped config value)."""
    if value is None:
        return pa.null()  # unifies with whatever type other rows give the column
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, list):
        inner = {value_type(v) for v in value if v is not None}
        return pa.list_(inner.pop() if len(inner) == 1 else _S)
    for kind, arrow in _ARROW_OF.items():
        if isinstance(value, kind):
            return arrow
    raise ResultsError(f"cannot store a {type(value).__name__} in a results column: {value!r}")


def rows_to_table(rows: list[dict[str, Any]], kinds: dict[str, type] | None = None) -> pa.Table:
    """Rows as a table: every base column with its declared type (null where a row has no value),
    config columns with their params' types (`kinds`), any other column (a metric) typed by its value."""
    types: dict[str, pa.DataType] = {}
    for row in rows:
        for name, value in row.items():
            if name in _BASE_TYPES:
                types[name] = _BASE_TYPES[name]
            elif kinds and name in kinds:
                types[name] = _ARROW_OF[kinds[name]]
            elif types.get(name, pa.null()) == pa.null():
                types[name] = value_type(value)
    fields = BASE_FIELDS + [pa.field(n, t) for n, t in types.items() if n not in _BASE_TYPES]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def _split(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        uri = os.path.abspath(uri)
    elif urllib.parse.urlsplit(uri).password:
        raise ResultsError("the results URI carries credentials (user:secret@); they would end up in logs and "
                           "reports. Drop them from the URI and give them the standard way: AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY in the environment, ~/.aws/credentials or an instance role")
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

    def __reduce__(self):
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
        table = rows_to_table([row], kinds)
        final = self.row_path(row["sweep"], row["trial_id"], row["attempt"])
        self.fs.create_dir(self.sweep_dir(row["sweep"]), recursive=True)
        if not self.is_local:
            pq.write_table(table, final, filesystem=self.fs)  # the object appears whole when the upload completes
            return final
        tmp = f"{self.sweep_dir(row['sweep'])}/.tmp-{row['trial_id']}-{row['attempt']}-{uuid.uuid4().hex}"
        try:
            pq.write_table(table, tmp, filesystem=self.fs)
            self.fs.move(tmp, final)
        finally:
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)
        return final

    def create_row(self, row: dict[str, Any], kinds: dict[str, type] | None = None) -> bool:
        """Write an attempt's row only if none exists yet; False if one does (it is left as it is).

        For rows that must be written once: the driver's `lost` row must not replace the row that
        a worker it gave up on wrote after all. A hard link on a local disk; on S3 a conditional
        PUT (If-None-Match: *) through boto3, as pyarrow's S3 filesystem cannot send one; on other
        filesystems a look before the write, which a concurrent writer can race.
        """
        final = self.row_path(row["sweep"], row["trial_id"], row["attempt"])
        data = _parquet_bytes(rows_to_table([row], kinds))
        if self.is_local:
            self.fs.create_dir(self.sweep_dir(row["sweep"]), recursive=True)
            tmp = f"{self.sweep_dir(row['sweep'])}/.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as f:
                f.write(data)
            try:
                os.link(tmp, final)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        if isinstance(self.fs, pafs.S3FileSystem) and _has_boto3():
            return _s3_put_if_absent(self.uri, self.fs.region, final, data)
        if self.fs.get_file_info(final).type != pafs.FileType.NotFound:
            return False
        self.write_row(row, kinds)
        return True

    def read_row(self, sweep: str, trial_id: str, attempt: int) -> dict[str, Any] | None:
        """One attempt's row from its own file, or None if it has none (or was compacted away)."""
        try:
            rows = self._read_file(self.row_path(sweep, trial_id, attempt)).to_pylist()
        except FileNotFoundError:
            return None
        return rows[0] if rows else None

    def local_log_file(self, sweep: str, trial_id: str, attempt: int) -> str:
        """Where a worker on this machine writes the child's log (uploaded by `commit_log` if remote)."""
        path = self.log_path(sweep, trial_id, attempt)
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return path
        scratch = os.path.join(os.environ.get("TMPDIR", "/tmp"), "gpu-grid-logs", sweep)
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
        return sorted(e.base_name.split("=", 1)[1] for e in entries
                      if e.type == pafs.FileType.Directory and e.base_name.startswith("sweep="))

    def files(self, sweep: str | None = None) -> list[str]:
        out = []
        for name in [sweep] if sweep else self.sweeps():
            selector = pafs.FileSelector(self.sweep_dir(name), allow_not_found=True)
            out += sorted(e.path for e in self.fs.get_file_info(selector)
                          if e.type == pafs.FileType.File and e.base_name.endswith(".parquet"))
        return out

    def read(self, sweep: str | None = None) -> pa.Table:
        """Every attempt's row, schemas unified, duplicate `(trial_id, attempt)` rows dropped.

        Small per-attempt files and compacted ones (grid/compact.py) are read alike. A file that a
        concurrent compaction deleted after the listing is covered by its merged file, so the
        listing is taken again.
        """
        for _ in range(_READ_TRIES):
            try:
                return dedupe(self.read_files(self.files(sweep)))
            except FileNotFoundError:
                continue
        raise ResultsError(f"files under {self.uri} kept disappearing while being read ({_READ_TRIES} tries); "
                           f"a compaction may be running: try again when it ends")

    def read_files(self, paths: list[str]) -> pa.Table:
        """These files' rows, not de-duplicated, schemas unified permissively: a column missing from
        older files reads as null, an int column that became float reads as float.
        Raises FileNotFoundError if one of them has gone since it was listed."""
        if not paths:
            return pa.table({"sweep": pa.array([], _S), "trial_id": pa.array([], _S),
                             "attempt": pa.array([], pa.int32()), "status": pa.array([], _S)})
        tables = self._read_many(paths)
        try:
            table = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ResultsError(f"cannot read the {len(paths)} result file(s) under {self.uri} together: {exc}. "
                               "A column changed to an incompatible type between schema versions; "
                               "rewrite the older files with that column cast, or read them apart (--sweep)") from None
        return table.combine_chunks()

    def _read_many(self, paths: list[str]) -> list[pa.Table]:
        """Opening a file costs more than its one row: many are read on threads (IO releases the GIL)."""
        if len(paths) < 2:
            return [self._read_file(p) for p in paths]
        with ThreadPoolExecutor(min(_READ_THREADS, len(paths))) as pool:
            return list(pool.map(self._read_file, paths))

    def _read_file(self, path: str) -> pa.Table:
        try:
            with self.fs.open_input_file(path) as f:
                return pq.ParquetFile(f).read(use_threads=False)
        except pa.ArrowInvalid as exc:
            raise ResultsError(f"{self.display_path(path)} is not a readable Parquet file ({exc}); "
                               f"move it out of the results folder") from None

    def latest(self, sweep: str | None = None) -> pa.Table:
        return latest_attempts(self.read(sweep))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _has_boto3() -> bool:
    try:
        import boto3  # noqa: F401
    except ImportError:
        return False
    return True


def _s3_put_if_absent(uri: str, region: str, path: str, data: bytes) -> bool:
    """PUT with If-None-Match: * (S3 answers 412 if the key exists). Endpoint and scheme come from
    the URI's query as pyarrow reads them; credentials and anything unset from the standard chain."""
    import boto3
    from botocore.exceptions import ClientError

    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query))
    endpoint = query.get("endpoint_override")
    if endpoint and "://" not in endpoint:
        endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
    # A new session each time: boto3's default one keeps the credentials it first found.
    client = boto3.session.Session().client("s3", endpoint_url=endpoint or None, region_name=region or None)
    bucket, key = path.split("/", 1)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (409, 412):  # 412: it exists; 409: a concurrent conditional write is winning
            return False
        raise ResultsError(f"cannot write s3://{path}: {exc}") from None
    return True


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
    lost = pc.fill_null(pc.equal(table.column("status"), "lost"), False)
    order = _row_numbers(table, keys).append_column("_lost", lost).sort_by(
        [(k, "ascending") for k in keys] + [("_lost", "ascending")])
    keep = order.group_by(keys, use_threads=False).aggregate([("_row", "first")])
    return table if keep.num_rows == table.num_rows else _take_sorted(table, keep.column("_row_first"))


def latest_attempts(table: pa.Table) -> pa.Table:
    """Each trial's highest attempt."""
    if table.num_rows == 0:
        return table
    order = _row_numbers(table, ["sweep", "trial_id", "attempt"]).sort_by(
        [("sweep", "ascending"), ("trial_id", "ascending"), ("attempt", "descending")])
    best = order.group_by(["sweep", "trial_id"], use_threads=False).aggregate([("_row", "first")])
    return _take_sorted(table, best.column("_row_first"))
