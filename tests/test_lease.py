"""One driver per sweep: a second `grid run` of a running sweep is refused with the holder named;
a driver that died frees its sweep (at once on a local folder, after the lease's time to live on
S3), and the next driver takes over without running a finished trial twice or reusing an attempt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import s3server
import yaml

from grid.errors import BusyError
from grid.results.lease import Lease
from grid.results.store import ResultStore

GRID = str(Path(sys.executable).with_name("grid"))
SPEC = {
    "name": "leased",
    "workload": "sleep",
    "params": {"seconds": 1.5},
    "timeout_s": 60,
    "axes": {"batch_size": [1, 2, 3, 4]},
}


def start(tmp_path: Path, *extra: str) -> subprocess.Popen:
    spec = tmp_path / "leased.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    argv = [
        GRID,
        "run",
        str(spec),
        "--results",
        str(tmp_path / "results"),
        "--runner",
        "local",
        "--plain",
        "--no-merge",  # the tests watch each attempt's file appear
        "--state-dir",
        str(tmp_path / "state"),
        *extra,
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_driver_of_a_running_sweep_is_refused_with_the_holder_named(tmp_path):
    first = start(tmp_path)
    lease = tmp_path / "results" / "sweep=leased" / "_lease.json"
    wait_for(lease.exists)
    second = start(tmp_path)
    output = second.communicate(timeout=60)[0]
    assert second.returncode == 5, output
    words = " ".join(output.split())
    assert f"pid {first.pid}" in words and "is being run by another driver" in words and "since" in words
    assert first.wait(timeout=60) == 0
    rows = ResultStore(str(tmp_path / "results")).read("leased").to_pylist()
    assert sorted((r["batch_size"], r["attempt"]) for r in rows) == [(1, 0), (2, 0), (3, 0), (4, 0)]
    assert not lease.exists(), "released at the end"


@pytest.mark.slow
def test_a_killed_driver_frees_its_sweep_at_once_and_no_attempt_number_is_reused(tmp_path):
    first = start(tmp_path)
    results = tmp_path / "results" / "sweep=leased"

    def cut_off() -> set[str]:
        """Attempts claimed (started) that have no row yet: running now."""
        claimed = {p.name for p in (results / "_attempts").iterdir()} if (results / "_attempts").exists() else set()
        return claimed - {p.stem for p in results.glob("*.parquet")}

    def has_log(name: str) -> bool:
        return (results / "_logs" / f"{name}.log").exists()

    # a trial that runs: claimed, and its process started (its log exists)
    wait_for(lambda: len(list(results.glob("*.parquet"))) >= 1 and any(has_log(n) for n in cut_off()))
    os.killpg(first.pid, signal.SIGKILL)  # the driver and the trial it was running
    first.wait()
    running = {n for n in cut_off() if has_log(n)}
    assert running, "a trial was running when the driver died"
    second = start(tmp_path)
    output = second.communicate(timeout=60)[0]
    assert second.returncode == 0, output
    rows = ResultStore(str(tmp_path / "results")).read("leased").to_pylist()
    assert sorted(r["batch_size"] for r in rows) == [1, 2, 3, 4], "every trial exactly one row"
    for name in running:
        trial_id, _, attempt = name.rpartition("-")
        (row,) = [r for r in rows if r["trial_id"] == trial_id]
        assert row["attempt"] == int(attempt) + 1, "the cut-off attempt keeps its number"
        logs = sorted(p.name for p in (results / "_logs").glob(f"{trial_id}-*.log"))
        assert logs == [f"{trial_id}-{attempt}.log", f"{trial_id}-{int(attempt) + 1}.log"], "a log per attempt"
        assert (results / "_logs" / f"{trial_id}-{int(attempt) + 1}.log").read_text().count("[gpu-grid] trial") == 1


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3server.serving(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.mark.slow
def test_s3_lease_refuses_a_second_driver_expires_and_is_taken_over(s3):
    store = ResultStore(s3.uri("lease"))
    # A fresh SeaweedFS takes seconds for its first write (it grows a volume): with it, a 3 s lease
    # would be written already expired. Warm the server first.
    Lease(store, "warm-up", ttl_s=60.0).acquire().release()
    # 10 s: long enough for the next two writes on a loaded machine, short enough to wait out.
    first = Lease(store, "sweep1", ttl_s=10.0).acquire()
    with pytest.raises(BusyError, match=f"pid {os.getpid()}"):
        Lease(store, "sweep1", ttl_s=10.0).acquire()
    Lease(store, "other", ttl_s=10.0).acquire().release()  # another sweep is free
    time.sleep(10.5)  # the first holder stopped refreshing: its lease expires
    second = Lease(store, "sweep1", ttl_s=60.0).acquire()
    time.sleep(0.4)
    with pytest.raises(BusyError):
        first.refresh()  # the first holder learns it lost the sweep
    second.release()
    third = Lease(store, "sweep1", ttl_s=60.0).acquire()  # released: free again
    assert json.loads(store.backend.read(third.path))["token"] == third.token
    third.release()
