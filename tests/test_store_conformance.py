"""One storage contract, run against every backend: a local directory, a real S3 server
(SeaweedFS on loopback) and a filesystem that pyarrow.fs offers with nothing more (its in-memory
`mock://` filesystem, through the generic backend: no conditional create, no lock).

The backend's operations (grid/results/backend/base.py): a file is written whole or not at all
and a reader never sees a part of it; a create writes once, and where the backend says it is
atomic, once however many writers race; a lock has one holder, which a dead holder frees (at once,
or when its document expires); listing, deleting, folders, a local folder copied up and down.

The store over them: a written row reads back unchanged; `(sweep, trial_id, attempt)` is one row
in the view however often it was written; `create_row` writes an attempt once (and an attempt
number is claimed once); concurrent writers lose nothing; a child's log lands beside the rows and
is never read as a row; an unreadable file is skipped and reported, never fatal; a trial's folder
is kept and found again by its next attempt; one driver per sweep; compaction keeps every row
once; a node's storage probe is written, seen and tidied away.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
import s3server
from rows_for_tests import make_row

from grid.errors import BusyError
from grid.results.backend import TEMP_PREFIX, Claim
from grid.results.compact import compact
from grid.results.dedupe import latest_attempts
from grid.results.lease import Lease
from grid.results.row import Row
from grid.results.store import ResultStore
from grid.results.trialdir import TrialFolder
from grid.spec.expand import expand
from grid.spec.parse import parse_spec

REPO = Path(__file__).resolve().parents[1]
SPEC = parse_spec({"name": "conf", "workload": "sleep", "axes": {"batch_size": list(range(1, 41))}})
TRIALS = expand(SPEC).trials


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3server.serving(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow), "arrow"])
def store(request, tmp_path) -> ResultStore:
    name = f"{request.node.originalname}-{uuid.uuid4().hex[:8]}"
    if request.param == "local":
        return ResultStore(str(tmp_path / "results"))
    if request.param == "arrow":  # a fresh in-memory filesystem per store
        return ResultStore(f"mock:///{name}")
    return ResultStore(request.getfixturevalue("s3").uri(f"conformance/{name}"))


@pytest.fixture
def backend(store):
    return store.backend


def never(doc: bytes) -> bool:
    return False


def temporaries(backend, folder: str) -> list[str]:
    return [e.path for e in backend.entries(folder, recursive=True) if e.name.startswith(TEMP_PREFIX)]


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- the backend's operations


def test_a_file_is_replaced_whole_and_no_temporary_is_left(backend):
    """Files of 3 MiB take many writes to land; a reader polling all the while sees no file or a
    whole version, never a part."""
    path = f"{backend.root}/w/file.bin"
    versions = [bytes([65 + i]) * (3 << 20) for i in range(4)]
    stop, partial, reads = threading.Event(), [], [0]

    def read_all():
        while not stop.is_set():
            try:
                data = backend.read(path)
            except FileNotFoundError:
                continue
            reads[0] += 1
            if data not in versions:
                partial.append(len(data))

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        for data in versions * 2:
            backend.write(path, data)
        deadline = time.monotonic() + 60  # on a loaded machine the reader may not have run yet
        while reads[0] < 3 and time.monotonic() < deadline:
            for data in versions:
                backend.write(path, data)
    finally:
        stop.set()
        reader.join()
    assert not partial and reads[0] > 0
    assert backend.read(path) in versions
    assert not temporaries(backend, f"{backend.root}/w")


def test_create_writes_a_file_once(backend, caplog):
    path = f"{backend.root}/c/t-0"
    with caplog.at_level("WARNING", logger="grid"):
        assert backend.create(path, b"first")
        assert not backend.create(path, b"second")
    assert backend.read(path) == b"first"
    warned = caplog.text.count("cannot create a file only if it is absent")
    assert warned == (0 if backend.atomic_create else 1), "a create that can race is said once"


def test_create_has_one_winner_among_racing_writers(backend):
    if not backend.atomic_create:
        pytest.skip("a look, then a write: racing writers can both win (said in a warning)")
    path = f"{backend.root}/c/t-1"
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: backend.create(path, f"writer{i}".encode()), range(8)))
    assert won.count(True) == 1
    assert backend.read(path) == f"writer{won.index(True)}".encode()


def locks(store, n: int = 2) -> list:
    return [store.backend.lock(store.layout.lease("s"), store.layout.lease_lock("s")) for _ in range(n)]


def test_a_lock_has_one_holder_until_it_is_released(store):
    first, second = locks(store)
    assert first.acquire(b"first", never) == Claim(True)
    if not first.exclusive:
        assert second.acquire(b"second", never).won, "nothing to refuse it with (the lease warns)"
        return
    doc = store.layout.lease("s")
    assert store.backend.read(doc) == b"first"
    assert second.acquire(b"second", never) == Claim(False, b"first")
    assert first.refresh(b"first again").won
    assert not second.acquire(b"second", never).won
    first.release(lambda found: found.startswith(b"first"))
    assert not store.backend.exists(doc)
    assert second.acquire(b"second", never) == Claim(True)
    assert second.refresh(b"second again").won
    second.release(lambda found: found.startswith(b"second"))
    assert not store.backend.exists(doc)


def test_an_expired_lock_is_taken_over_and_its_old_holder_learns_it(store):
    first, second = locks(store)
    if not first.exclusive or first.frees_at_once:
        pytest.skip("no lock, or one that a live holder keeps (a dead one frees it at once: next test)")
    first.acquire(b"first", never)
    assert second.acquire(b"second", lambda found: found == b"first") == Claim(True, b"first")
    assert first.refresh(b"first again") == Claim(False, b"second")
    first.release(lambda found: found == b"first")  # not its document any more: left alone
    assert store.backend.read(store.layout.lease("s")) == b"second"
    second.release(lambda found: found == b"second")
    assert not store.backend.exists(store.layout.lease("s"))


HOLDER = """
import sys, time
from grid.results.backend import open_backend
lock = open_backend(sys.argv[1]).lock(sys.argv[2], sys.argv[3])
assert lock.acquire(b"child", lambda doc: False).won
print("held", flush=True)
time.sleep(600)
"""


def test_a_dead_holders_lock_is_free_at_once(store):
    (lock,) = locks(store, 1)
    if not (lock.exclusive and lock.frees_at_once):
        pytest.skip("no lock, or one that frees itself when its document expires (previous test)")
    argv = [sys.executable, "-c", HOLDER, store.uri, store.layout.lease("s"), store.layout.lease_lock("s")]
    child = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        assert lock.acquire(b"parent", lambda found: True) == Claim(False, b"child"), "a live holder keeps it"
    finally:
        child.kill()
        child.wait()
    assert lock.acquire(b"parent", never) == Claim(True)
    lock.release(lambda found: found == b"parent")


def test_entries_deletes_and_folders(backend):
    base = f"{backend.root}/tree"
    backend.write(f"{base}/a.txt", b"a")
    backend.write(f"{base}/sub/b.txt", b"b")
    assert {(e.name, e.is_file) for e in backend.entries(base)} == {("a.txt", True), ("sub", False)}
    found = [e for e in backend.entries(base, recursive=True) if e.is_file]
    assert sorted(e.path for e in found) == [f"{base}/a.txt", f"{base}/sub/b.txt"]
    assert all(e.mtime and abs(e.mtime - datetime.now().timestamp()) < 600 for e in found)
    assert backend.entries(f"{backend.root}/nowhere") == []
    backend.delete(f"{base}/a.txt")
    assert not backend.exists(f"{base}/a.txt") and backend.exists(f"{base}/sub/b.txt")
    with pytest.raises(FileNotFoundError):
        backend.delete(f"{base}/a.txt")
    with pytest.raises(FileNotFoundError):
        backend.read(f"{base}/a.txt")
    backend.delete_folder(base)
    assert [e for e in backend.entries(base, recursive=True) if e.is_file] == []
    backend.delete_folder(base)  # not there: nothing to do
    backend.make_folder(f"{backend.root}/made/deep")  # nothing to make on an object store
    backend.write(f"{backend.root}/made/deep/x", b"x")
    assert backend.read(f"{backend.root}/made/deep/x") == b"x"


def test_a_local_folder_goes_up_and_comes_down(backend, tmp_path):
    source = tmp_path / "source"
    (source / "ckpt").mkdir(parents=True)
    (source / "ckpt" / "weights.bin").write_bytes(os.urandom(3 << 20))
    (source / "log.txt").write_text("epoch 1\n")
    folder = f"{backend.root}/up/t1"
    backend.copy_up(str(source), folder)
    kept = sorted(os.path.relpath(e.path, folder) for e in backend.entries(folder, recursive=True) if e.is_file)
    assert kept == ["ckpt/weights.bin", "log.txt"]
    backend.copy_down(folder, str(tmp_path / "down"))
    assert files_under(tmp_path / "down") == files_under(source)
    backend.upload(str(source / "ckpt" / "weights.bin"), f"{folder}/again.bin")
    assert backend.read(f"{folder}/again.bin") == (source / "ckpt" / "weights.bin").read_bytes()
    assert not temporaries(backend, folder)


def test_paths_on_this_machine_and_as_shown(store):
    backend, path = store.backend, store.layout.row("s", "t", 0)
    here = backend.local_path(path)
    if here is None:  # elsewhere: the user sees a URI
        assert backend.show(path) == f"{store.uri.split('://', 1)[0]}://{path}"
    else:
        assert here == path == backend.show(path) and os.path.isabs(path)
    staging = backend.staging("logs", "s")
    assert os.path.isabs(staging) and staging.endswith(os.path.join(f"gpu-grid-{os.geteuid()}", "logs", "s"))
    assert os.stat(os.path.dirname(os.path.dirname(staging))).st_mode & 0o777 == 0o700  # this user's alone


# -- the store over the backend


def row(trial_index: int = 0, attempt: int = 0, status: str = "ok", **extra) -> Row:
    return make_row(SPEC, TRIALS[trial_index], attempt, status, **extra)


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
    assert store.read_row("conf", TRIALS[0].trial_id, 0).process.wall_s == 1.25
    assert store.read_row("conf", TRIALS[0].trial_id, 1) is None


def test_sweeps_are_listed_and_read_apart(store):
    other = parse_spec({"name": "other", "workload": "sleep", "axes": {"batch_size": [1]}})
    store.write_row(row(0))
    store.write_row(make_row(other, expand(other).trials[0]))
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
    assert not temporaries(store.backend, store.layout.sweep("conf")), "a temporary file was left behind"


def test_create_row_writes_an_attempt_once(store):
    assert store.create_row(row(0, 0, status="lost", error_type="first"))
    assert not store.create_row(row(0, 0, status="lost", error_type="second"))
    assert store.read_row("conf", TRIALS[0].trial_id, 0).outcome.error_type == "first"


def test_create_row_has_one_winner_among_racing_writers(store):
    if not store.backend.atomic_create:
        pytest.skip("a look, then a write: racing writers can both win (said in a warning)")
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: store.create_row(row(0, 0, status="lost", error_type=f"writer{i}")), range(8)))
    assert won.count(True) == 1
    winner = won.index(True)
    assert store.read_row("conf", TRIALS[0].trial_id, 0).outcome.error_type == f"writer{winner}"


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
    assert won.count(True) == 1 or not store.backend.atomic_create
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


def test_a_trials_folder_is_kept_and_found_again_by_its_next_attempt(store):
    first = TrialFolder(store, "conf", "t1", 0)
    local, held = first.open()
    assert held == 0
    Path(local, "ckpt").mkdir()
    Path(local, "ckpt", "step.txt").write_text("3")
    Path(local, "scratch.txt").write_text("x")
    kept = first.close(local)
    assert kept == store.backend.show(store.layout.trial_folder("conf", "t1"))
    second = TrialFolder(store, "conf", "t1", 1)
    local, held = second.open()
    assert held == 2 and Path(local, "ckpt", "step.txt").read_text() == "3"
    Path(local, "scratch.txt").unlink()  # deleted by the attempt: deleted in the store too
    Path(local, "ckpt", "step.txt").write_text("5")
    second.close(local)
    third = TrialFolder(store, "conf", "t1", 2)
    local, held = third.open()
    assert held == 1 and files_under(Path(local)) == {"ckpt/step.txt": b"5"}
    assert third.close(local) == kept and not second.notes[1:] and not third.notes[1:]
    empty = TrialFolder(store, "conf", "t2", 0)
    assert empty.close(empty.open()[0]) is None, "a trial that writes nothing keeps nothing"


def test_one_driver_per_sweep(store, caplog):
    with caplog.at_level("WARNING", logger="grid"):
        first = Lease(store, "conf").acquire()
    if "offers no lock" in caplog.text:
        Lease(store, "conf").acquire().release()  # nothing refuses it: the warning said so
    else:
        with pytest.raises(BusyError, match=f"pid {os.getpid()}, since"):
            Lease(store, "conf").acquire()
    first.release()
    assert not store.backend.exists(first.path)
    Lease(store, "conf").acquire().release()


def test_compaction_keeps_every_row_once(store):
    for i in range(5):
        store.write_row(row(i, wall_s=float(i)))
    store.write_row(row(0, wall_s=0.0))
    store.write_row(row(0, 1, wall_s=9.0))
    before = sorted((r["trial_id"], r["attempt"], r["wall_s"]) for r in store.read("conf").to_pylist())
    (done,) = compact(store, "conf")
    assert (done.files_before, done.rows_written, done.deleted) == (6, 6, 6)
    (merged,) = store.files("conf")
    assert merged == done.merged_path and merged.rsplit("/", 1)[1].startswith("compacted-")
    assert sorted((r["trial_id"], r["attempt"], r["wall_s"]) for r in store.read("conf").to_pylist()) == before
    assert not temporaries(store.backend, store.layout.sweep("conf"))


def test_a_nodes_storage_probe_is_written_seen_and_tidied_away(store):
    from grid.results.storage_check import NodeProbes, write_probe

    probes = NodeProbes(store)
    write_probe(store, f"{probes.run_dir}/driver")
    assert store.backend.read(f"{probes.run_dir}/driver").startswith(b"gpu-grid storage check from ")
    probes.close()
    assert not store.backend.exists(f"{probes.run_dir}/driver")
