"""One result-sink contract, run against every backend: a local directory and a real S3 server.

The contract: a written row reads back unchanged; a reader never sees a partial file, whatever
it lists mid-write; `(sweep, trial_id, attempt)` is one row in the view however often it was
written; `create_row` writes an attempt once however many writers race (and an attempt number is
claimed once); concurrent writers lose nothing; a child's log lands beside the rows and is never
read as a row; an unreadable file is skipped and reported, never fatal.
"""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest
import s3server

from grid.results.backend import TEMP_PREFIX
from grid.results.dedupe import latest_attempts
from grid.results.rows import base_row
from grid.results.store import ResultStore
from grid.spec.expand import expand
from grid.spec.parse import parse_spec

SPEC = parse_spec({"name": "conf", "workload": "sleep", "axes": {"batch_size": list(range(1, 41))}})
TRIALS = expand(SPEC).trials


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3server.serving(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def store(request, tmp_path) -> ResultStore:
    if request.param == "local":
        return ResultStore(str(tmp_path / "results"))
    server = request.getfixturevalue("s3")
    return ResultStore(server.uri(f"conformance/{request.node.originalname}-{uuid.uuid4().hex[:8]}"))


def row(trial_index: int = 0, attempt: int = 0, status: str = "ok", **extra) -> dict:
    out = base_row(SPEC, TRIALS[trial_index], attempt, None)
    out.update(status=status, **extra)
    return out


def test_row_reads_back_unchanged(store):
    ended = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    store.write_row(row(0, 0, wall_s=1.25, epoch_times=[0.5, 0.25], ended_at=ended, workers=["n0/gpu1"]))
    (got,) = store.read("conf").to_pylist()
    assert (got["trial_id"], got["attempt"], got["status"]) == (TRIALS[0].trial_id, 0, "ok")
    assert (got["wall_s"], got["epoch_times"], got["ended_at"], got["workers"]) == (
        1.25,
        [0.5, 0.25],
        ended,
        ["n0/gpu1"],
    )
    assert got["batch_size"] == 1
    assert store.read_row("conf", TRIALS[0].trial_id, 0)["wall_s"] == 1.25
    assert store.read_row("conf", TRIALS[0].trial_id, 1) is None


def test_sweeps_are_listed_and_read_apart(store):
    other = parse_spec({"name": "other", "workload": "sleep", "axes": {"batch_size": [1]}})
    store.write_row(row(0))
    store.write_row({**base_row(other, expand(other).trials[0], 0, None), "status": "ok"})
    assert store.sweeps() == ["conf", "other"]
    assert store.read("conf").num_rows == 1
    assert store.read().num_rows == 2
    assert len(store.files("conf")) == 1 and store.files("conf")[0].endswith(f"{TRIALS[0].trial_id}-0.parquet")


def test_rewritten_attempt_is_one_row_and_latest_is_highest_attempt(store):
    store.write_row(row(0, 0, status="lost"))
    store.write_row(row(0, 0, status="lost", error_type="again"))
    store.write_row(row(0, 1, status="ok"))
    table = store.read("conf")
    assert sorted(table.column("attempt").to_pylist()) == [0, 1]
    assert latest_attempts(table).column("status").to_pylist() == ["ok"]


def test_reader_never_sees_a_partial_file(store):
    """Rows of ~2 MiB take many writes to land; a reader polling all the while must only ever
    list files it can read whole, and never lose a row it saw before."""
    big = "x" * (2 * 1024 * 1024)
    done = threading.Event()

    def write_all():
        try:
            for i in range(8):
                store.write_row(row(i, error_tail=big + str(i)))
        finally:
            done.set()

    writer = threading.Thread(target=write_all)
    writer.start()
    seen, reads = 0, 0
    while not done.is_set() or reads == 0:
        table = store.read("conf")  # raises if it meets a partial Parquet file
        assert table.num_rows >= seen
        if table.num_rows:
            assert all(len(t) > len(big) for t in table.column("error_tail").to_pylist())
        seen, reads = table.num_rows, reads + 1
    writer.join()
    assert store.read("conf").num_rows == 8
    left = store.backend.entries(store.layout.sweep("conf"), recursive=True)
    assert not [e.path for e in left if e.name.startswith(TEMP_PREFIX)], "a temporary file was left behind"


def test_create_row_writes_an_attempt_once(store):
    assert store.create_row(row(0, 0, status="lost", error_type="first"))
    assert not store.create_row(row(0, 0, status="lost", error_type="second"))
    assert store.read_row("conf", TRIALS[0].trial_id, 0)["error_type"] == "first"


def test_create_row_has_one_winner_among_racing_writers(store):
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: store.create_row(row(0, 0, status="lost", error_type=f"writer{i}")), range(8)))
    assert won.count(True) == 1
    winner = won.index(True)
    assert store.read_row("conf", TRIALS[0].trial_id, 0)["error_type"] == f"writer{winner}"


def test_concurrent_writers_lose_nothing(store):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.write_row(row(i, wall_s=float(i))), range(40)))
    table = store.read("conf")
    assert sorted(table.column("wall_s").to_pylist()) == [float(i) for i in range(40)]
    assert len(set(table.column("trial_id").to_pylist())) == 40


def test_log_lands_beside_the_rows_and_is_not_a_row(store):
    local = store.local_log_file("conf", TRIALS[0].trial_id, 0)
    with open(local, "w") as f:
        f.write("child stdout\nchild stderr\n")
    shown = store.commit_log(local, "conf", TRIALS[0].trial_id, 0)
    assert shown.endswith(f"sweep=conf/_logs/{TRIALS[0].trial_id}-0.log")
    path = store.layout.log("conf", TRIALS[0].trial_id, 0)
    assert store.backend.read(path) == b"child stdout\nchild stderr\n"
    if store.backend.local_path(path) is None:
        assert not os.path.exists(local), "the local scratch copy of an uploaded log is removed"
    store.write_row(row(0, log_path=shown))
    assert store.read("conf").column("log_path").to_pylist() == [shown]
    assert store.files("conf") == [store.layout.row("conf", TRIALS[0].trial_id, 0)]


def test_attempt_numbers_are_claimed_once_and_listed(store):
    trial_id = TRIALS[0].trial_id
    assert store.claim_attempt("conf", trial_id, 0)
    assert not store.claim_attempt("conf", trial_id, 0), "a number is taken once"
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda _: store.claim_attempt("conf", trial_id, 1), range(8)))
    assert won.count(True) == 1
    assert store.claim_attempt("conf", TRIALS[1].trial_id, 0)
    assert store.claimed("conf") == {trial_id: 1, TRIALS[1].trial_id: 0}
    assert store.read("conf").num_rows == 0, "a claim is not a row"


def test_an_unreadable_file_is_skipped_and_reported_not_fatal(store, caplog):
    store.write_row(row(0))
    store.write_row(row(1))
    bad = f"{store.layout.sweep('conf')}/garbage.parquet"
    store.backend.write(bad, b"not parquet at all")
    with caplog.at_level("WARNING", logger="grid"):
        table = store.read("conf")
    assert table.num_rows == 2
    assert bad in store.unreadable and "garbage.parquet" in caplog.text
