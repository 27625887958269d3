"""`grid compact`: a sweep's files merged into one, with every row exactly once in the readers'
view, even when the process is SIGKILLed between the commit and the last delete."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sweep_data import retried_dataset

from grid.cli import main
from grid.results.compact import compact
from grid.results.row import Row
from grid.results.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "c",
    "workload": "sleep",
    "params": {"seconds": 0.02},
    "timeout_s": 30,
    "axes": {"batch_size": [1, 2, 3, 4], "fail": ["none", "error"]},
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """8 trials, the 4 failing ones retried (12 attempts), one attempt's file written twice: 13 files."""
    return retried_dataset(tmp_path_factory.mktemp("compact"), SPEC)


@pytest.fixture
def results(sweep, tmp_path) -> Path:
    shutil.copytree(sweep, tmp_path / "results")
    return tmp_path / "results"


def rows(store: ResultStore) -> list[dict]:
    return sorted(store.read().to_pylist(), key=lambda r: (r["trial_id"], r["attempt"]))


def keys(store: ResultStore) -> list[tuple]:
    return [(r["trial_id"], r["attempt"]) for r in rows(store)]


def parquet_files(results: Path) -> list[str]:
    return sorted(p.name for p in (results / "sweep=c").glob("*.parquet"))


def test_compact_merges_every_row_once(results, capsys):
    store = ResultStore(str(results))
    before = rows(store)
    assert len(parquet_files(results)) == 13 and len(before) == 12
    assert main(["compact", str(results)]) == 0
    assert "sweep c: 13 files -> 1 (12 rows, 1 duplicate(s) dropped)" in " ".join(capsys.readouterr().out.split())
    (merged,) = parquet_files(results)
    assert merged.startswith("compacted-")
    assert pq.ParquetFile(results / "sweep=c" / merged).metadata.num_row_groups == 1
    assert rows(store) == before
    assert len(list((results / "sweep=c" / "_logs").iterdir())) == 12  # logs stay where rows point
    assert not [p for p in (results / "sweep=c").iterdir() if p.name.startswith(".tmp")]
    assert main(["compact", str(results), "--sweep", "c"]) == 0
    assert "1 file(s), nothing to merge" in capsys.readouterr().out
    assert main(["compact", str(results), "--sweep", "nope"]) == 2


KILLER = """
import sys, time
from grid.results.compact import compact
from grid.results.store import ResultStore

deletes = int(sys.argv[2])
seen = []

def pause(step, path):
    seen.append(step)
    if seen.count("deleted") == deletes and (deletes or step == "committed"):
        print("paused", flush=True)
        time.sleep(600)

compact(ResultStore(sys.argv[1]), hook=pause)
print("finished", flush=True)
"""


@pytest.mark.parametrize("deletes", [0, 6])
def test_killed_between_commit_and_deletes_leaves_every_row_once(results, deletes):
    store = ResultStore(str(results))
    before = rows(store)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(results), str(deletes)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "paused"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    files = parquet_files(results)
    assert len(files) == 1 + 13 - deletes and sum(f.startswith("compacted-") for f in files) == 1
    assert rows(store) == before  # merged file and leftovers overlap; the view has each row once
    assert len(set(keys(store))) == len(keys(store)) == 12
    compact(store)
    assert len(parquet_files(results)) == 1 and rows(store) == before


def test_rows_written_during_compaction_are_kept(results):
    store = ResultStore(str(results))
    late = dict(store.read().to_pylist()[0], trial_id="0123456789abcdef", attempt=0)

    def write_late(step, path):
        if step == "committed":
            store.write_row(Row.from_record(late))

    compact(store, hook=write_late)
    files = parquet_files(results)
    assert "0123456789abcdef-0.parquet" in files and len(files) == 2
    assert ("0123456789abcdef", 0) in keys(store) and len(keys(store)) == 13


def test_stale_temporaries_removed_and_fresh_ones_ignored(results):
    sweep_dir = results / "sweep=c"
    for name in (".tmp-compact-old", ".tmp-compact-new"):
        (sweep_dir / name).write_bytes(b"PAR1 half a file")
    hours_ago = time.time() - 7200
    os.utime(sweep_dir / ".tmp-compact-old", (hours_ago, hours_ago))
    store = ResultStore(str(results))
    assert len(keys(store)) == 12
    compact(store)
    assert not (sweep_dir / ".tmp-compact-old").exists() and (sweep_dir / ".tmp-compact-new").exists()
    assert len(keys(store)) == 12


def test_ten_thousand_trials_read_fast_after_compaction(sweep, tmp_path, capsys):
    """10,000 real-row copies (distinct trial ids) in 100 files; compacted, the latest view reads well under 1 s."""
    template = ResultStore(str(sweep)).read().slice(0, 1).to_pylist()[0]
    schema = pq.read_schema(sorted((sweep / "sweep=c").glob("*.parquet"))[0])
    sweep_dir = tmp_path / "big" / "sweep=c"
    sweep_dir.mkdir(parents=True)
    for f in range(100):
        batch = [dict(template, trial_id=f"{f:04d}{i:012d}", attempt=0) for i in range(100)]
        pq.write_table(pa.Table.from_pylist(batch, schema=schema), sweep_dir / f"batch{f:03d}-0.parquet")
    store = ResultStore(str(tmp_path / "big"))
    started = time.perf_counter()
    assert store.latest().num_rows == 10_000
    before = time.perf_counter() - started
    compact(store)
    started = time.perf_counter()
    assert store.latest().num_rows == 10_000
    after = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n10,000 trials: latest() {before:.3f} s from 100 files, {after:.3f} s compacted")
    assert after < 1.0


def test_a_lost_row_written_after_compaction_does_not_hide_the_real_one(results):
    store = ResultStore(str(results))
    compact(store)
    real = next(r for r in store.read().to_pylist() if r["status"] == "ok")
    store.write_row(Row.from_record(dict(real, status="lost", error_type="WorkerLost")))  # the driver found no file
    key = (real["trial_id"], real["attempt"])
    assert [r["status"] for r in store.read().to_pylist() if (r["trial_id"], r["attempt"]) == key] == ["ok"]


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    """A real S3 server (SeaweedFS on loopback), as in the store conformance suite."""
    import s3server

    with s3server.serving(tmp_path_factory.mktemp("s3")) as server:
        yield server


def test_compaction_on_object_storage(sweep, s3_env):
    """On S3 the merged object appears whole with its one PUT; the per-trial objects are deleted after."""
    local = ResultStore(str(sweep))
    store = ResultStore(s3_env.uri("compact"))
    for row in local.read().to_pylist():
        store.write_row(Row.from_record(row))
    before = rows(store)
    assert len(store.files()) == 12
    (done,) = compact(store)
    assert done.rows_written == 12 and done.deleted == 12
    (merged,) = store.files()
    assert merged.rsplit("/", 1)[1].startswith("compacted-")
    assert rows(store) == before
