"""The results dataset: the Arrow schema, atomic per-attempt writes, reading and de-duplication.

Layout under the results URI (a local directory, `s3://bucket/prefix`, or any pyarrow.fs URI):

    sweep=<name>/<trial_id>-<attempt>.parquet   one file per finished attempt
    sweep=<name>/_logs/<trial_id>-<attempt>.log the child's stdout and stderr

A file is written under a temporary name that does not end in `.parquet` (so globbing readers
such as DuckDB never see it) and renamed; on object storage one PUT is the commit. Readers
unify schemas permissively, drop duplicate `(trial_id, attempt)` rows and, for the latest view,
keep each trial's highest attempt.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from grid.errors import ResultsError
from tasks import WORKLOADS

SCHEMA_VERSION = 1

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
    pa.field("config_json", _S),
    pa.field("status", _S),
    pa.field("exit_code", pa.int32()),
    pa.field("signal", _S),
    pa.field("error_type", _S),
    pa.field("error_tail", _S),
    pa.field("epoch_times", pa.list_(_F)),
    pa.field("first_epoch_s", _F),
    pa.field("steady_epoch_s", _F),
    pa.field("images_per_s", _F),
    pa.field("global_batch", pa.int64()),
    pa.field("import_s", _F),
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
_ARROW_OF = {int: pa.int64(), float: _F, str: _S, bool: pa.bool_()}


def config_fields(workload: str) -> list[pa.Field]:
    """One typed column per workload parameter (the trial's config, flattened)."""
    return [pa.field(p.name, _ARROW_OF[p.kind]) for p in WORKLOADS[workload].params.values()]


def schema_for(workload: str) -> pa.Schema:
    return pa.schema(BASE_FIELDS + config_fields(workload))


def rows_to_table(rows: list[dict[str, Any]], workload: str) -> pa.Table:
    schema = schema_for(workload)
    unknown = set().union(*(r.keys() for r in rows)) - set(schema.names)
    if unknown:
        raise ResultsError(f"row has columns outside the schema: {sorted(unknown)}")
    return pa.Table.from_pylist(rows, schema=schema)


def _split(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in uri:
        uri = os.path.abspath(uri)
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
    def write_row(self, row: dict[str, Any]) -> str:
        """Write one attempt's row as its own Parquet file, atomically."""
        table = rows_to_table([row], row["workload"])
        final = self.row_path(row["sweep"], row["trial_id"], row["attempt"])
        self.fs.create_dir(self.sweep_dir(row["sweep"]), recursive=True)
        if not self.is_local:
            pq.write_table(table, final, filesystem=self.fs)  # one PUT: the object appears whole
            return final
        tmp = f"{self.sweep_dir(row['sweep'])}/.tmp-{row['trial_id']}-{row['attempt']}-{uuid.uuid4().hex}"
        try:
            pq.write_table(table, tmp, filesystem=self.fs)
            self.fs.move(tmp, final)
        finally:
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)
        return final

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
        """Every attempt's row, schemas unified, duplicate `(trial_id, attempt)` rows dropped."""
        tables = [pq.read_table(p, filesystem=self.fs) for p in self.files(sweep)]
        if not tables:
            return pa.table({"sweep": pa.array([], _S), "trial_id": pa.array([], _S),
                             "attempt": pa.array([], pa.int32()), "status": pa.array([], _S)})
        return dedupe(pa.concat_tables(tables, promote_options="permissive"))

    def latest(self, sweep: str | None = None) -> pa.Table:
        return latest_attempts(self.read(sweep))


def _keys(table: pa.Table, names: Iterable[str]) -> list[tuple]:
    return list(zip(*(table.column(n).to_pylist() for n in names)))


def dedupe(table: pa.Table) -> pa.Table:
    """One row per (sweep, trial_id, attempt): at-least-once writes, exactly-once view."""
    keep: dict[tuple, int] = {}
    for i, key in enumerate(_keys(table, ("sweep", "trial_id", "attempt"))):
        keep[key] = i
    return table.take(sorted(keep.values())) if len(keep) < table.num_rows else table


def latest_attempts(table: pa.Table) -> pa.Table:
    """Each trial's highest attempt."""
    best: dict[tuple, tuple[int, int]] = {}
    for i, (sweep, tid, attempt) in enumerate(_keys(table, ("sweep", "trial_id", "attempt"))):
        if (sweep, tid) not in best or attempt >= best[(sweep, tid)][0]:
            best[(sweep, tid)] = (attempt, i)
    return table.take(sorted(i for _, i in best.values()))


def config_of(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["config_json"]) if row.get("config_json") else {}
