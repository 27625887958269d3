"""An object store that blinks, with a real S3 server (SeaweedFS on loopback): stopped mid-sweep,
while rows, logs and trial folders are in flight, and started again on the same port and data
seconds later. The sweep pauses and goes on: no traceback, every trial's row exactly once with its
real outcome, every log and trial folder in the bucket after the run. Then a driver killed with
SIGKILL mid-sweep: the next `grid run` takes its lease over at once and finishes the sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import s3server
import yaml

from grid.results.store import ResultStore

pytestmark = pytest.mark.slow
GRID = str(Path(sys.executable).with_name("grid"))
TRIALS = 12
SCRIPT = """
import os, sys, time
folder = os.environ["GRID_TRIAL_DIR"]
with open(os.path.join(folder, "checkpoint.txt"), "w") as f:
    f.write(os.environ["GRID_BATCH_SIZE"])
time.sleep(float(sys.argv[1]))
print("trained", os.environ["GRID_BATCH_SIZE"])
"""


@pytest.fixture
def s3(tmp_path):
    try:
        s3server.weed_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    server = s3server.start(tmp_path / "s3")
    yield server
    server.stop()


def spec_file(tmp_path: Path, name: str, seconds: float) -> Path:
    (tmp_path / "train.py").write_text(SCRIPT)
    spec = {
        "name": name,
        "command": f"python train.py {seconds}",
        "timeout_s": 120,
        "axes": {"batch_size": list(range(1, TRIALS + 1))},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start(s3: s3server.S3Server, spec: Path, tmp_path: Path, *extra: str) -> subprocess.Popen:
    argv = [GRID, "run", str(spec), "--results", s3.uri(), "--plain", "--state-dir", str(tmp_path / "state")]
    argv += ["--runner", "local", "--num-gpus", "4", *extra]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **s3.env}
    )


def store(s3: s3server.S3Server) -> ResultStore:
    os.environ.update(s3.env)
    return ResultStore(s3.uri(), retry_s=0)


def wait_for_rows(s3: s3server.S3Server, sweep: str, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(store(s3).files(sweep)) < n:
        assert time.monotonic() < deadline, f"fewer than {n} rows after {timeout} s"
        time.sleep(0.2)


def check_every_trial_once(s3: s3server.S3Server, sweep: str) -> None:
    results = store(s3)
    rows = results.read(sweep).to_pylist()
    latest = results.latest(sweep).to_pylist()
    assert sorted(r["batch_size"] for r in latest) == list(range(1, TRIALS + 1)), "each trial has a row"
    assert {r["status"] for r in latest} == {"ok"}, [(r["status"], r["error_message"]) for r in latest]
    assert len({(r["trial_id"], r["attempt"]) for r in rows}) == len(rows), "no attempt twice"
    logs = {e.name for e in results.backend.entries(results.layout.sweep(sweep) + "/_logs")}
    for row in latest:
        assert f"{row['trial_id']}-{row['attempt']}.log" in logs, f"log of {row['trial_id']} in the bucket"
        kept = results.backend.read(results.layout.trial_folder(sweep, row["trial_id"]) + "/checkpoint.txt")
        assert kept.decode() == str(row["batch_size"]), "its trial folder in the bucket"
        log_text = results.backend.read(results.layout.log(sweep, row["trial_id"], row["attempt"])).decode()
        assert f"trained {row['batch_size']}" in log_text


def test_a_store_that_blinks_costs_a_pause_not_the_trials(s3, tmp_path):
    driver = start(s3, spec_file(tmp_path, "blink", 2.0), tmp_path, "--store-retry", "60")
    wait_for_rows(s3, "blink", 3)
    s3.stop()
    time.sleep(12)  # trials end meanwhile: their rows, logs and folders wait for the store
    s3.restart()
    output = driver.communicate(timeout=300)[0]
    assert driver.returncode == 0, output
    assert "Traceback" not in output, output
    assert "retrying" in output, "it did meet the outage"
    check_every_trial_once(s3, "blink")
    assert not list((tmp_path / "state").rglob("*.write")), "nothing left in the spool"
    assert not list((tmp_path / "state").rglob("*.log")), "no log left in the spool"


def test_a_rerun_right_after_a_killed_driver_takes_its_lease_over(s3, tmp_path):
    spec = spec_file(tmp_path, "crash", 1.0)
    driver = start(s3, spec, tmp_path)
    wait_for_rows(s3, "crash", 2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    started = time.monotonic()
    again = start(s3, spec, tmp_path)
    output = again.communicate(timeout=300)[0]
    assert again.returncode == 0, output
    assert "no longer running" in output and "taking it over" in output, output
    assert "Traceback" not in output, output
    assert time.monotonic() - started < 120
    check_every_trial_once(s3, "crash")
