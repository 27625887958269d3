"""Run one workload trial the way grid does: its trial.json, the environment grid/attempt.py
builds for a CPU slot, the backend's interpreter, `python -m tasks.<workload> trial.json`."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from grid.attempt import Placement, child_env, interpreter_for
from grid.expand import expand
from grid.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
MXNET_PYTHON = REPO / ".venv-mxnet" / "bin" / "python"
CPU_SLOT = Placement(node_id="local", host="localhost", workers=("cpu-0",), gpu_ids=())


@dataclass
class TrialRun:
    result: dict
    returncode: int
    log: str
    env: dict


def run_trial(tmp_path: Path, workload: str, backend: str, params: dict, extra_env: dict | None = None,
              timeout: float = 300) -> TrialRun:
    spec = parse_spec({"name": "t", "workload": workload, "params": params, "axes": {"backend": [backend]}})
    trial = expand(spec).trials[0]
    env, _ = child_env(spec, trial, CPU_SLOT)
    env.update(extra_env or {})
    result_path = tmp_path / "result.json"
    trial_path = tmp_path / "trial.json"
    trial_path.write_text(json.dumps({"trial_id": trial.trial_id, "attempt": 1, "sweep": spec.name,
                                      "workload": workload, "config": trial.config, "repeat": 0,
                                      "gpu_ids": [], "result_path": str(result_path)}))
    argv = [interpreter_for(spec, backend), "-m", f"tasks.{workload}", str(trial_path)]
    proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    return TrialRun(result, proc.returncode, proc.stdout + proc.stderr, env)


def ok(run: TrialRun) -> dict:
    """The result of a trial that must have ended ok; otherwise fail with its evidence."""
    assert run.result.get("status") == "ok", (
        f"status {run.result.get('status')!r}: {run.result.get('error_message')}\n{run.log[-3000:]}")
    assert run.returncode == 0
    return run.result
