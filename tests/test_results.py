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


def _reference_dedupe(rows: list[dict]) -> list[dict]:
    """dedupe as a Python loop: per (sweep, trial_id, attempt) the first row in table order that is
    not `lost` (else the first `lost` one), kept in table order."""
    chosen: dict[tuple, int] = {}
    for i, r in enumerate(rows):
        key = (r["sweep"], r["trial_id"], r["attempt"])
        if key not in chosen or (rows[chosen[key]]["status"] == "lost" and r["status"] != "lost"):
            chosen[key] = i
    return [rows[i] for i in sorted(chosen.values())]


def test_dedupe_and_latest_attempts_match_a_python_loop_on_random_tables():
    """Random tables of several chunks: repeated attempts, `lost` and null statuses, two sweeps."""
    import random

    import pyarrow as pa

    from grid.results.dedupe import dedupe

    rng = random.Random(7)
    for _ in range(200):
        rows = [
            {
                "sweep": rng.choice(["a", "b"]),
                "trial_id": rng.choice(["t1", "t2", "t3", "t4"]),
                "attempt": rng.randint(0, 2),
                "status": rng.choice(["ok", "lost", "error", None]),
                "n": i,
            }
            for i in range(rng.randint(0, 14))
        ]
        cut = rng.randint(0, len(rows))
        names = ("sweep", "trial_id", "attempt", "status", "n")
        schema = pa.schema([(name, pa.int64() if name in ("attempt", "n") else pa.string()) for name in names])
        table = pa.concat_tables([pa.Table.from_pylist(rows[:cut], schema), pa.Table.from_pylist(rows[cut:], schema)])
        expected = _reference_dedupe(rows)
        assert dedupe(table).to_pylist() == expected
        highest: dict[tuple, dict] = {}
        for r in expected:
            key = (r["sweep"], r["trial_id"])
            if key not in highest or r["attempt"] > highest[key]["attempt"]:
                highest[key] = r
        assert latest_attempts(dedupe(table)).to_pylist() == sorted(highest.values(), key=lambda r: r["n"])


def test_reading_a_sweep_does_not_import_pandas(tmp_path):
    """pyarrow imports pandas (half a second) when a Python value becomes an Arrow one or a table is
    grouped: the read path does neither, so `grid status` and `grid report` do not pay for it."""
    import subprocess
    import sys

    store = ResultStore(str(tmp_path))
    spec, trials = _rows()
    for attempt, status in ((0, "lost"), (1, "ok")):
        store.write_row(_row(spec, trials[0], attempt, status=status))
    code = (
        "import sys; from grid.results.store import ResultStore; from grid.results.dedupe import latest_attempts;"
        f"t = latest_attempts(ResultStore({str(tmp_path)!r}).read('s')); assert t.num_rows == 1, t;"
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
