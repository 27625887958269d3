"""A `grid run` stopped by Ctrl-C or SIGTERM (a scheduler, `timeout`, a cancelled CI job): it ends
its local Ray and the running trial, says so, exits 130 or 143, and the next run does what is left,
with every finished row kept once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest

from grid.results.store import ResultStore

SPEC = {
    "name": "stopped",
    "workload": "sleep",
    "params": {"seconds": 1.0},
    "axes": {"batch_size": [1, 2, 3, 4, 5, 6]},
    "timeout_s": 60,
}
# The child installs Python's Ctrl-C handler itself: a process started in the background by a
# non-interactive shell inherits SIGINT ignored.
CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from grid.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _start(spec_path, results, state) -> subprocess.Popen:
    argv = ["run", str(spec_path), "--results", str(results), "--plain", "--state-dir", str(state)]
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 120.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} in the output: {''.join(lines)}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, code, said", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_a_stopped_run_ends_its_ray_and_trials_and_the_next_run_finishes(write_spec, tmp_path, signum, code, said):
    spec_path = write_spec(SPEC)
    results, state = tmp_path / "results", tmp_path / "state"
    proc = _start(spec_path, results, state)
    _wait_for_line(proc, "[grid] 2/6 ok")
    (record,) = (state / "local-ray").glob("*.json")
    started = json.loads(record.read_text())["processes"]
    assert started, "the driver recorded no Ray processes"
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, (out, err)
    assert f"{said}" in err and "run again to resume" in err, err
    assert "SIGTERM received at time" not in err + out  # Ray's C++ handler did not take the signal
    assert not record.exists()  # an orderly stop: the local Ray ended and its record removed

    def alive(info: dict) -> bool:
        try:
            p = psutil.Process(info["pid"])
            return p.create_time() == info["created"] and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + 10
    while any(alive(p) for p in started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p["name"] for p in started if alive(p)]
    done_before = {r["trial_id"] for r in ResultStore(str(results)).latest("stopped").to_pylist()}
    assert len(done_before) >= 2

    proc = _start(spec_path, results, state)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, (out, err)
    assert f"{len(done_before)} already done" in out
    rows = ResultStore(str(results)).latest("stopped").to_pylist()
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    ok_rows = [r for r in ResultStore(str(results)).read("stopped").to_pylist() if r["status"] == "ok"]
    assert sorted(r["trial_id"] for r in ok_rows) == sorted({r["trial_id"] for r in ok_rows})  # none twice


def _alive(info: dict) -> bool:
    try:
        p = psutil.Process(info["pid"])
        return p.create_time() == info["created"] and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.slow
def test_a_killed_driver_leaves_no_ray_and_another_sweep_goes_on(write_spec, tmp_path):
    """kill -9 of a driver mid-sweep: every process of the local Ray it started ends within 10 s,
    with no next run; another driver's sweep on the same machine (same state folder) is untouched."""
    state = tmp_path / "state"
    axes = {"batch_size": list(range(1, 21))}
    other_spec = write_spec({**SPEC, "name": "other", "params": {"seconds": 3.0}, "axes": axes}, "other.yaml")
    other = _start(other_spec, tmp_path / "other", state)
    _wait_for_line(other, "[grid] 1/20 ok")
    (other_record,) = (state / "local-ray").glob("*.json")
    others_ray = json.loads(other_record.read_text())["processes"]
    victim = _start(write_spec(SPEC), tmp_path / "results", state)
    _wait_for_line(victim, "[grid] 1/6 ok")
    record = state / "local-ray" / f"{victim.pid}.json"
    assert record.exists(), (victim.pid, sorted(p.name for p in (state / "local-ray").iterdir()))
    started = json.loads(record.read_text())["processes"]
    names = {p["name"] for p in started}
    assert started and any("raylet" in n for n in names), names
    victim.kill()  # SIGKILL: no handler, no finally
    victim.wait()
    killed_at = time.monotonic()
    while (record.exists() or any(_alive(p) for p in started)) and time.monotonic() - killed_at < 10:
        time.sleep(0.2)
    assert not [p["name"] for p in started if _alive(p)], "still running 10 s after the driver was killed"
    assert not record.exists()  # its watcher ended them and removed the record
    assert all(_alive(p) for p in others_ray), [p["name"] for p in others_ray if not _alive(p)]
    other.send_signal(signal.SIGINT)  # it ran on, untouched; no need to wait for its 20 trials
    out, err = other.communicate(timeout=120)
    assert other.returncode == 130, (out, err)
    assert "Token authentication is enabled" not in err  # not a warning on every run
    rows = ResultStore(str(tmp_path / "other")).latest("other").to_pylist()
    assert len(rows) >= 2 and {r["status"] for r in rows} == {"ok"}
