"""Real sweeps on a real local Ray with 4 fake GPUs: pinned workers, gangs, timeouts, kills, resume."""

from __future__ import annotations

import contextlib
import json
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
from grid.spec.parse import parse_spec
from grid.sweep import RunOptions, run_sweep
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
    """kill -9 the driver (its own local Ray) mid-sweep, run again: what the dead driver's Ray left
    running is ended by the next driver, every trial has one row, none is re-run, and the attempt
    that was cut off keeps its number (its rerun is the next one)."""
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
    results, state = tmp_path / "results", tmp_path / "state"
    cmd = [
        sys.executable,
        "-m",
        "grid",
        "run",
        str(spec_path),
        "--results",
        str(results),
        "--num-gpus",
        "2",
        "--plain",
        "--no-merge",  # each attempt's file, to see that none is written again
        "--state-dir",
        str(state),
    ]
    driver = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list((results / "sweep=resume").glob("*.parquet"))) < 3:
        assert time.time() < deadline and driver.poll() is None, "driver never wrote 3 results"
        time.sleep(0.1)
    recorded = json.loads((state / "local-ray" / f"{driver.pid}.json").read_text())["processes"]
    assert any("raylet" in p["name"] for p in recorded) and any("gcs_server" in p["name"] for p in recorded)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(1)
    before = {p.name: p.stat().st_mtime_ns for p in (results / "sweep=resume").glob("*.parquet")}
    assert 3 <= len(before) < 10
    claimed = {p.name for p in (results / "sweep=resume" / "_attempts").iterdir()}
    cut_off = claimed - {name.removesuffix(".parquet") for name in before}  # started, never finished
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    # The dead driver's Ray may finish a trial or two more before the next driver ends it: those count as done.
    assert int(re.search(r"(\d+) already done", rerun.stdout).group(1)) >= len(before)
    # What the dead driver's Ray left running is ended by its watcher or by this run, whichever comes
    # first (the next test has the next driver end it alone): none outlives the run.
    survivors = [p for p in _session_processes(driver.pid) if p.status() != psutil.STATUS_ZOMBIE]
    assert not survivors, f"processes of the killed driver outlived the next run: {survivors}"
    assert not list((state / "local-ray").glob("*.json")), "every record ended with its driver's processes"
    store = ResultStore(str(results))
    rows = store.read("resume").to_pylist()
    assert len(rows) == 10 and len({r["trial_id"] for r in rows}) == 10
    assert {r["status"] for r in rows} == {"ok"}
    after = {p.name: p.stat().st_mtime_ns for p in (results / "sweep=resume").glob("*.parquet")}
    assert all(after[name] == mtime for name, mtime in before.items()), "a finished trial was re-run"
    reruns = {f"{r['trial_id']}-{r['attempt'] - 1}" for r in rows if r["attempt"] > 0}
    assert reruns <= cut_off, "only cut-off attempts were run again, each under the next number"


def test_the_next_driver_ends_what_a_dead_driver_left_and_says_so(tmp_path, caplog):
    """A record of a driver that died with its watcher: the next driver ends the processes it names
    (children first told by their parents' end, orphans killed) and says so; a live driver's record
    is left alone."""
    from grid.scheduler.localray import end_leftovers

    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    left = subprocess.Popen([sys.executable, "-c", "import subprocess; subprocess.run(['sleep', '60'])"])
    child = None
    for _ in range(100):
        kids = psutil.Process(left.pid).children()
        if kids:
            child = kids[0]
            break
        time.sleep(0.05)
    assert child is not None
    records = tmp_path / "local-ray"
    records.mkdir()
    proc = psutil.Process(left.pid)
    entry = {"pid": left.pid, "created": proc.create_time(), "name": "raylet"}
    (records / f"{dead.pid}.json").write_text(
        json.dumps({"driver": {"pid": dead.pid, "created": 0.0}, "processes": [entry]})
    )
    me = psutil.Process()
    (records / f"{me.pid}.json").write_text(
        json.dumps({"driver": {"pid": me.pid, "created": me.create_time()}, "processes": [entry]})
    )
    with caplog.at_level("WARNING", logger="grid"):
        assert end_leftovers(str(tmp_path), grace_s=1.0) == 1
    left.wait(10)
    with contextlib.suppress(psutil.NoSuchProcess):
        assert child.status() == psutil.STATUS_ZOMBIE, "the orphan was ended"  # not yet reaped by init
    assert f"ended 1 Ray process(es) that a killed driver (pid {dead.pid}) left behind: raylet" in caplog.text
    assert sorted(p.name for p in records.iterdir()) == [f"{me.pid}.json"]  # a live driver's record stays


def _busy_worker(timeout: float = 60, gpu: str | None = None, not_pid: int | None = None) -> tuple[psutil.Process, str]:
    """A GpuWorker actor process of this test process's own Ray (never another's on the machine:
    other test processes run theirs) running a trial now, and the GPU it holds; with `gpu`, one
    holding that GPU, and with `not_pid`, not that process."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in psutil.Process().children(recursive=True):
            cmdline = ""
            with contextlib.suppress(psutil.Error):
                cmdline = " ".join(proc.cmdline())
            if "ray::GpuWorker.run" in cmdline and proc.pid != not_pid:
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        held = child.environ().get("CUDA_VISIBLE_DEVICES")
                        if held and gpu in (None, held):
                            return proc, held
        time.sleep(0.1)
    raise AssertionError(f"no busy worker{f' on GPU {gpu}' if gpu else ''} found in {timeout:.0f} s")


def test_a_killed_worker_is_replaced_and_its_gpu_used_again(ray_local, tmp_path):
    """Every trial waits for a go file, opened only once a replacement worker runs a trial on the
    killed one's GPU: however slowly a loaded machine starts it, the others cannot finish first."""
    go = tmp_path / "go"
    spec = parse_spec(
        {
            "name": "heal",
            "workload": "sleep",
            "params": {"seconds": 0.5, "until_file": str(go)},
            "axes": {"batch_size": list(range(1, 17))},
            "timeout_s": 150,
        }
    )
    done = {}
    thread = threading.Thread(target=lambda: done.update(out=run_sweep(spec, ray_opts(tmp_path / "results"))))
    thread.start()
    try:
        worker, gpu = _busy_worker()
        worker.kill()
        killed_at = time.time()
        replacement, _ = _busy_worker(timeout=120, gpu=gpu, not_pid=worker.pid)
    finally:
        go.touch()
        thread.join(180)
    assert not thread.is_alive() and done["out"].unusable == []
    rows = ResultStore(str(tmp_path / "results")).read("heal").to_pylist()
    latest = {r["trial_id"]: r for r in sorted(rows, key=lambda r: r["attempt"])}
    assert len(latest) == 16 and {r["status"] for r in latest.values()} == {"ok"}, "every trial one final ok row"
    lost = [r for r in rows if r["status"] == "lost"]
    assert [r["gpu_ids"] for r in lost] == [[gpu]], "the killed worker's trial, and only it, was lost"
    assert lost[0]["error_type"] in ("ray.exceptions.ActorDiedError", "ray.exceptions.ActorUnavailableError")
    again = [r for r in rows if r["gpu_ids"] == [gpu] and r["started_at"].timestamp() > killed_at]
    assert again, f"GPU {gpu} took trials again after its worker died (a replacement worker, pid {replacement.pid})"


def test_a_hung_worker_is_ended_and_its_attempt_run_again(ray_local, tmp_path):
    """A worker that stops answering (SIGSTOP) past timeout_s and its grace is ended by the driver:
    the attempt is lost and re-run on a replacement, and the sweep does not stall."""
    import io

    from grid.results.spool import DeliveryOptions
    from grid.scheduler.driver import Scheduler
    from grid.scheduler.progress import PlainProgress
    from grid.scheduler.raypool import RayPool
    from grid.scheduler.resume import plan_attempts
    from grid.spec.expand import expand

    spec = sleep_spec("hung", 1.0, {"batch_size": [1, 2, 3, 4, 5, 6]}, timeout_s=3)
    store = ResultStore(str(tmp_path))
    delivery = DeliveryOptions(str(tmp_path / "state"), retry_s=0)
    pool = RayPool(spec, store, delivery=delivery)
    scheduler = Scheduler(
        spec,
        store,
        pool,
        PlainProgress(lambda t: t.trial_id, stream=io.StringIO()),
        delivery=delivery,
        kill_grace_s=2.0,
    )
    pending, skipped = plan_attempts(spec, expand(spec).trials, store)
    done = {}
    thread = threading.Thread(target=lambda: done.update(out=scheduler.run(pending, skipped)))
    thread.start()
    try:
        worker, gpu = _busy_worker()
        worker.suspend()  # hung: alive, answering nothing
        thread.join(120)
    finally:
        with contextlib.suppress(psutil.Error):
            worker.resume()
        pool.close()
    assert not thread.is_alive(), "the sweep stalled on a hung worker"
    rows = store.read("hung").to_pylist()
    latest = {r["trial_id"]: r for r in sorted(rows, key=lambda r: r["attempt"])}
    assert len(latest) == 6 and {r["status"] for r in latest.values()} == {"ok"}
    lost = [r for r in rows if r["status"] == "lost"]
    assert len(lost) == 1 and lost[0]["gpu_ids"] == [gpu]
