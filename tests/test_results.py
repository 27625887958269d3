"""The results store: one file per attempt, atomic writes, no temp file visible, de-duplicated reads."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest
from rows_for_tests import make_row

from grid.errors import ResultsError
from grid.results.dedupe import latest_attempts
from grid.results.schema import SCHEMA_VERSION
from grid.results.store import ResultStore
from grid.spec.expand import expand
from grid.spec.parse import parse_spec


def _rows(n=3):
    spec = parse_spec({"name": "s", "workload": "sleep", "axes": {"batch_size": list(range(1, n + 1))}})
    return spec, expand(spec).trials


def _row(spec, trial, attempt, status="ok", **extra):
    return make_row(spec, trial, attempt, status, **extra)


def test_write_is_one_file_per_attempt_with_no_temp_left(tmp_path):
    store = ResultStore(str(tmp_path))
    spec, trials = _rows()
    path = store.write_row(_row(spec, trials[0], 0, wall_s=1.5))
    assert path.endswith(f"sweep=s/{trials[0].trial_id}-0.parquet")
    assert os.listdir(tmp_path / "sweep=s") == [f"{trials[0].trial_id}-0.parquet"]
    table = pq.read_table(path)
    assert table.column("schema_version").to_pylist() == [SCHEMA_VERSION]
    assert table.column("batch_size").to_pylist() == [1]


def test_failed_write_leaves_nothing(tmp_path):
    store = ResultStore(str(tmp_path))
    spec, trials = _rows()
    with pytest.raises(ResultsError, match="cannot store a dict in a results column"):
        store.write_row(_row(spec, trials[0], 0, colour={"red": 1}))
    sweep_dir = tmp_path / "sweep=s"
    assert not sweep_dir.exists() or [p.name for p in sweep_dir.iterdir() if p.is_file()] == []


def test_read_dedupes_and_latest_takes_highest_attempt(tmp_path):
    store = ResultStore(str(tmp_path))
    spec, trials = _rows()
    store.write_row(_row(spec, trials[0], 0, status="error"))
    store.write_row(_row(spec, trials[0], 1, status="ok"))
    store.write_row(_row(spec, trials[1], 0, status="timeout"))
    # the same attempt written twice (at-least-once execution) under another file name
    dup = tmp_path / "sweep=s" / f"{trials[1].trial_id}-0-copy.parquet"
    dup.write_bytes((tmp_path / "sweep=s" / f"{trials[1].trial_id}-0.parquet").read_bytes())
    everything = store.read("s")
    assert everything.num_rows == 3
    latest = {r["trial_id"]: (r["attempt"], r["status"]) for r in latest_attempts(everything).to_pylist()}
    assert latest == {trials[0].trial_id: (1, "ok"), trials[1].trial_id: (0, "timeout")}


def test_temp_names_are_never_read(tmp_path):
    store = ResultStore(str(tmp_path))
    spec, trials = _rows()
    store.write_row(_row(spec, trials[0], 0))
    (tmp_path / "sweep=s" / ".tmp-half-written").write_bytes(b"PAR1 not really")
    assert store.read("s").num_rows == 1


def test_empty_store(tmp_path):
    store = ResultStore(str(tmp_path / "none"))
    assert store.sweeps() == [] and store.read().num_rows == 0


def test_sweeps_listed(tmp_path):
    store = ResultStore(str(tmp_path))
    spec, trials = _rows()
    store.write_row(_row(spec, trials[0], 0))
    assert store.sweeps() == ["s"]
