"""Every process a trial starts ends with it, whatever session it moved to: a cgroup v2 of its own
where the machine offers one, else a subreaper and the processes seen. And one GPU, one exclusive
trial: a lock per GPU held for the attempt, across sweeps and drivers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from trials import log_of, ok, run_spec_trial

from grid.trial import gpulock
from grid.trial.contain import CgroupContainment, contain
from grid.trial.isolate import run_child

ESCAPE = "import subprocess; p = subprocess.Popen(['setsid', 'sleep', '300']); print('escaped', p.pid, flush=True)"
HAS_CGROUP = CgroupContainment.create("probe") is not None
if HAS_CGROUP:
    CgroupContainment.create("probe2").end()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def escaped_pid(log: Path) -> int:
    return int(next(line.split()[1] for line in log.read_text().splitlines() if line.startswith("escaped")))


@pytest.mark.skipif(not HAS_CGROUP, reason="no writable cgroup v2 hierarchy here")
@pytest.mark.parametrize("then", ["exits", "times out"])
def test_cgroup_ends_a_grandchild_that_left_for_its_own_session(tmp_path, then):
    code = ESCAPE + ("; import time; time.sleep(60)" if then == "times out" else "")
    box = contain("test", str(tmp_path / "trial.json"), prefer="cgroup")
    assert box.method == "cgroup v2"
    out = run_child(
        [sys.executable, "-c", code],
        env=dict(os.environ),
        cwd=str(tmp_path),
        log_path=str(tmp_path / "log"),
        timeout_s=2 if then == "times out" else 30,
        box=box,
    )
    assert out.timed_out is (then == "times out")
    assert out.stray_killed == 1 and out.containment == "cgroup v2"
    assert gone(escaped_pid(tmp_path / "log"))
    assert not box.path.exists(), "the attempt's cgroup is removed"


REAPER = """
import json, os, sys
from grid.trial.contain import contain
from grid.trial.isolate import run_child
box = contain("test", sys.argv[1] + "/trial.json", prefer="subreaper")
env = {**os.environ, "GRID_TRIAL": sys.argv[1] + "/trial.json"}
code = sys.argv[2]
out = run_child([sys.executable, "-c", code], env=env, cwd=sys.argv[1], log_path=sys.argv[1] + "/log",
                timeout_s=float(sys.argv[3]), box=box)
print(json.dumps({"strays": out.stray_killed, "method": out.containment, "timed_out": out.timed_out}))
"""


@pytest.mark.parametrize("then", ["exits", "times out"])
def test_subreaper_ends_a_grandchild_that_left_for_its_own_session(tmp_path, then):
    code = ESCAPE + ("; import time; time.sleep(60)" if then == "times out" else "")
    # In a process of its own: the subreaper mark stays with the process that sets it.
    proc = subprocess.run(
        [sys.executable, "-c", REAPER, str(tmp_path), code, "2" if then == "times out" else "30"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out == {"strays": 1, "method": "subreaper and the processes seen", "timed_out": then == "times out"}
    assert gone(escaped_pid(tmp_path / "log"))


@pytest.mark.slow
def test_a_trial_that_leaves_a_process_behind_gets_it_ended_and_counted(tmp_path):
    row = ok(run_spec_trial(tmp_path, {"command": ["python", "-c", ESCAPE]}))
    pid = int(next(line.split()[1] for line in log_of(row).splitlines() if line.startswith("escaped")))
    assert gone(pid)
    assert row["stray_processes"] == 1
    assert row["containment"] == ("cgroup v2" if HAS_CGROUP else "subreaper and the processes seen")
    assert "1 process(es) of the trial outlived it and were ended" in row["notes"]


def test_gpu_locks_one_exclusive_trial_per_gpu_shared_ones_together(tmp_path):
    events: list[tuple[str, float]] = []
    t0 = time.monotonic()

    def hold(name: str, exclusive: bool, seconds: float) -> None:
        with gpulock.holding(["GPU-abc"], exclusive, lock_dir=tmp_path) as waited:
            events.append((f"{name} in after {waited:.1f}", time.monotonic() - t0))
            time.sleep(seconds)

    first = threading.Thread(target=hold, args=("timing", True, 1.0))
    first.start()
    time.sleep(0.2)
    probes = [threading.Thread(target=hold, args=(f"probe{i}", False, 0.5)) for i in range(2)]
    for thread in probes:
        thread.start()
    for thread in [first, *probes]:
        thread.join()
    starts = {name.split()[0]: at for name, at in events}
    assert starts["probe0"] >= 0.9 and starts["probe1"] >= 0.9, "nothing shares a GPU with a timing trial"
    assert abs(starts["probe0"] - starts["probe1"]) < 0.3, "memory probes share a GPU with each other"
    said: list[str] = []
    with (
        gpulock.holding(["GPU-abc"], False, lock_dir=tmp_path),
        gpulock.holding([], True, lock_dir=tmp_path, waiting=said.append) as waited,
    ):
        assert waited < 0.1  # no GPU (CPU slot): nothing to wait for
    assert said == []
