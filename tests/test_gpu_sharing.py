"""On a real GPU: a process that is not the trial's but uses its GPU is named in the row, and two
drivers never run timing trials on one GPU at the same time (the per-GPU lock on the node)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from grid.results.store import ResultStore
from grid.shared import AttemptTimes, Placement
from grid.spec.expand import expand
from grid.spec.parse import parse_spec
from grid.trial.attempt import run_attempt

pytestmark = pytest.mark.gpu
GRID = [sys.executable, "-m", "grid"]  # the GPU machine has no `grid` script, only the source tree
HOLD = "import time, torch; x = torch.empty(2**28, device='cuda'); print('ready', flush=True); time.sleep(60)"
USE = "import time, torch; x = torch.empty(2**20, device='cuda'); time.sleep(2)"


def test_a_foreign_process_on_the_trials_gpu_is_named_in_its_row(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        spec = parse_spec(
            {"name": "foreign", "command": ["python", "-c", USE], "params": {"backend": "torch"}}, base_dir=tmp_path
        )
        store = ResultStore(str(tmp_path / "results"))
        done = run_attempt(
            spec,
            expand(spec).trials[0],
            0,
            Placement("local", "h", ("gpu0",), ("0",)),
            store,
            AttemptTimes(queued_at=time.time()),
        )
    finally:
        holder.kill()
        holder.wait()
    row = done.row
    assert row["status"] == "ok", row["error_tail"]
    assert holder.pid in (row["gpu_foreign_pids"] or []), row["gpu_mem_method"]
    assert any("other processes used its GPUs" in note for note in row["notes"])


# A trial whose child process uses the GPU and ends while the trial goes on (a DDP rank that ends
# before its launcher): NVML lists it a while after it left the trial's tree; it is still the trial's.
GPU_CHILD = "import os, torch; x = torch.ones(2**20, device='cuda'); print('child pid', os.getpid(), x.sum().item())"
CHILDREN = (
    "import subprocess, sys, time\n"
    "for _ in range(3):\n"
    f"    subprocess.run([sys.executable, '-c', {GPU_CHILD!r}], check=True)\n"
    "time.sleep(1)\n"
)


def test_a_trials_own_child_that_used_the_gpu_and_ended_is_not_foreign(tmp_path):
    spec = parse_spec(
        {"name": "own", "command": ["python", "-c", CHILDREN], "params": {"backend": "torch"}}, base_dir=tmp_path
    )
    store = ResultStore(str(tmp_path / "results"))
    done = run_attempt(
        spec, expand(spec).trials[0], 0, Placement("local", "h", ("gpu0",), ("0",)), store, AttemptTimes(time.time())
    )
    row = done.row
    assert row["status"] == "ok", row["error_tail"]
    assert row["gpu_mem_peak_mib"] > 0, row["gpu_mem_method"]
    log = Path(row["log_path"]).read_text().splitlines()
    children = [int(line.split()[2]) for line in log if line.startswith("child pid ")]
    assert len(children) == 3
    assert not set(children) & set(row["gpu_foreign_pids"] or []), (children, row["gpu_foreign_pids"])


def test_two_drivers_never_run_timing_trials_on_one_gpu_at_once(tmp_path):
    procs = []
    for name in ("first", "second"):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(
            yaml.safe_dump(
                {"name": name, "workload": "sleep", "params": {"seconds": 2.0}, "axes": {"batch_size": [1, 2]}}
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    *GRID,
                    "run",
                    str(spec),
                    "--results",
                    str(tmp_path / name),
                    "--runner",
                    "local",
                    "--num-gpus",
                    "1",
                    "--plain",
                    "--state-dir",
                    str(tmp_path / "state"),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stdout.read()
    rows = [r for name in ("first", "second") for r in ResultStore(str(tmp_path / name)).read(name).to_pylist()]
    spans = sorted((r["started_at"], r["ended_at"]) for r in rows)
    assert all(s1 >= e0 for (_, e0), (s1, _) in itertools.pairwise(spans)), "two timing trials shared GPU 0"
    assert max(r["gpu_wait_s"] for r in rows) > 1.0, "a trial of the other sweep waited for the GPU"
