"""Real sweeps on a real local Ray with 4 fake GPUs: pinned workers, gangs, timeouts, kills, resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from grid.results.store import ResultStore
from grid.scheduler.sweep import RunOptions, run_sweep
from grid.spec.parse import parse_spec
from tests.test_scheduler import assert_no_gpu_shared, intervals_by_gpu

pytestmark = pytest.mark.slow


def sleep_spec(name, seconds, axes, **extra):
    return parse_spec(
        {"name": name, "workload": "sleep", "params": {"seconds": seconds}, "axes": axes, "timeout_s": 60, **extra}
    )


def ray_opts(results) -> RunOptions:
    return RunOptions(results=str(results), runner="ray", live=False)


def _child_pid(log_dir: Path, timeout: float = 60) -> tuple[Path, int]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for log in log_dir.glob("*.log") if log_dir.exists() else []:
            match = re.search(r"pid (\d+)", log.read_text())
            if match:
                return log, int(match.group(1))
        time.sleep(0.1)
    raise AssertionError("no trial child started")


def test_twenty_trials_on_four_gpus(ray_local, tmp_path):
    spec = sleep_spec("twenty", 1.0, {"batch_size": list(range(1, 21))})
    t0 = time.time()
    outcome = run_sweep(spec, ray_opts(tmp_path))
    wall = time.time() - t0
    rows = ResultStore(str(tmp_path)).read("twenty").to_pylist()
    assert len(rows) == 20 and len({r["trial_id"] for r in rows}) == 20 and len(outcome.rows) == 20
    assert {r["status"] for r in rows} == {"ok"}
    assert_no_gpu_shared(rows)
    by_gpu = intervals_by_gpu(rows)
    assert sorted(by_gpu) == ["0", "1", "2", "3"]
    assert all(len(r["workers"]) == 1 and r["workers"][0].endswith(f"/gpu{r['gpu_ids'][0]}") for r in rows)
    assert all(r["child_env_json"].count("CUDA_VISIBLE_DEVICES") == 1 for r in rows)
    assert wall < 60, f"20 x 1 s on 4 GPUs took {wall:.0f} s"


def test_gang_trial_on_two_workers_of_one_node_while_singles_flow(ray_local, tmp_path):
    spec = sleep_spec(
        "gang",
        1.5,
        {"batch_size": [1, 2, 3, 4, 5, 6], "gpus": [1, 2]},
        exclude=[{"gpus": 2, "batch_size": [1, 3, 5, 6]}],
    )
    run_sweep(spec, ray_opts(tmp_path))
    rows = ResultStore(str(tmp_path)).latest("gang").to_pylist()
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    gangs = [r for r in rows if r["gpus"] == 2]
    singles = [r for r in rows if r["gpus"] == 1]
    for gang in gangs:
        assert len(set(gang["gpu_ids"])) == 2 and len(gang["workers"]) == 2
        assert '"CUDA_VISIBLE_DEVICES": "{}"'.format(",".join(gang["gpu_ids"])) in gang["child_env_json"]
        overlapping = [s for s in singles if s["started_at"] < gang["ended_at"] and s["ended_at"] > gang["started_at"]]
        assert overlapping, "1-GPU trials should keep running beside the gang trial"
    assert_no_gpu_shared(rows)


def test_timeout_kills_process_group(ray_local, tmp_path):
    spec = sleep_spec("timeout", 60, {"batch_size": [1]}, timeout_s=2)
    t0 = time.time()
    run_sweep(spec, ray_opts(tmp_path))
    (row,) = ResultStore(str(tmp_path)).latest("timeout").to_pylist()
    assert row["status"] == "timeout" and row["error_type"] == "Timeout"
    assert time.time() - t0 < 30
    pid = int(re.search(r"pid (\d+)", Path(row["log_path"]).read_text()).group(1))
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_kill_9_of_child_recorded_and_sweep_goes_on(ray_local, tmp_path):
    spec = sleep_spec("kill", 4, {"batch_size": [1, 2, 3]})
    done = {}
    thread = threading.Thread(target=lambda: done.update(out=run_sweep(spec, ray_opts(tmp_path))))
    thread.start()
    log, pid = _child_pid(tmp_path / "sweep=kill" / "_logs")
    os.kill(pid, signal.SIGKILL)
    thread.join(120)
    rows = {r["trial_id"]: r for r in ResultStore(str(tmp_path)).latest("kill").to_pylist()}
    killed = rows[log.name.rsplit("-", 1)[0]]
    assert killed["status"] == "killed" and killed["signal"] == "SIGKILL"
    assert sorted(r["status"] for r in rows.values()) == ["killed", "ok", "ok"]


def _session_processes(sid: int) -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                out.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass
    return out


def test_resume_after_driver_killed(tmp_path):
    """kill -9 the driver (its own local Ray) mid-sweep, run again: every trial once, none re-run."""
    spec_path = tmp_path / "resume.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "resume",
                "workload": "sleep",
                "params": {"seconds": 1.5},
                "axes": {"batch_size": list(range(1, 11))},
                "timeout_s": 60,
            }
        )
    )
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "grid", "run", str(spec_path), "--results", str(results), "--num-gpus", "2", "--plain"]
    driver = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(list((results / "sweep=resume").glob("*.parquet"))) < 3:
            assert time.time() < deadline and driver.poll() is None, "driver never wrote 3 results"
            time.sleep(0.1)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        for proc in _session_processes(driver.pid):  # whatever of its Ray outlived it
            proc.kill()
    before = {p.name: p.stat().st_mtime_ns for p in (results / "sweep=resume").glob("*.parquet")}
    assert 3 <= len(before) < 10
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(before)} already done" in rerun.stdout
    store = ResultStore(str(results))
    rows = store.read("resume").to_pylist()
    assert len(rows) == 10 and len({r["trial_id"] for r in rows}) == 10
    assert {r["status"] for r in rows} == {"ok"}
    after = {p.name: p.stat().st_mtime_ns for p in (results / "sweep=resume").glob("*.parquet")}
    assert all(after[name] == mtime for name, mtime in before.items()), "a finished trial was re-run"


def test_workers_report_their_pins(ray_local, tmp_path):
    from grid.scheduler.raypool import RayPool

    pool = RayPool(sleep_spec("pins", 0.1, {"batch_size": [1]}), ResultStore(str(tmp_path)))
    try:
        workers = pool.workers()
        assert sorted(g for w in workers for g in w.gpu_ids) == ["0", "1", "2", "3"]
        assert len({w.node_id for w in workers}) == 1 and pool.on_gpu
    finally:
        pool.close()
