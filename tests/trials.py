"""Run one trial the way grid does (grid/trial/attempt.py: its trial JSON, environment, bootstrap,
records and row) on a CPU slot, and run code under the trial bootstrap in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from grid.cli import main
from grid.protocol import ProcessRecord
from grid.results.history import accept
from grid.results.store import ResultStore
from grid.shared import AttemptTimes, Placement
from grid.spec.expand import expand
from grid.spec.parse import parse_spec
from grid.trial.attempt import run_attempt
from grid.trial.collect import read_records

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "tasks" / "site"
MXNET_PYTHON = REPO / ".venv-mxnet" / "bin" / "python"
CPU_SLOT = Placement(node_id="local", host="localhost", workers=("cpu-0",), gpu_ids=())


def run_spec_trial(tmp_path: Path, data: dict, base_dir: Path | None = None) -> dict:
    """The first trial of a spec, run as one attempt on a CPU slot; returns its row as stored."""
    spec = parse_spec({"name": "t", **data}, base_dir=base_dir or tmp_path)
    trial = expand(spec).trials[0]
    store = ResultStore(str(tmp_path / "results"))
    run_attempt(spec, trial, 0, CPU_SLOT, store, AttemptTimes(queued_at=0.0))
    return store.read(spec.name).to_pylist()[0]


def run_trial(tmp_path: Path, workload: str, backend: str, params: dict, env: dict | None = None) -> dict:
    """One built-in workload trial; returns its row."""
    return run_spec_trial(
        tmp_path, {"workload": workload, "params": params, "axes": {"backend": [backend]}, "env": env or {}}
    )


def ok(row: dict) -> dict:
    """The row of a trial that must have ended ok; otherwise fail with its evidence."""
    assert row["status"] == "ok", f"status {row['status']!r}: {row['error_message']}\n{row['error_tail']}"
    return row


def log_of(row: dict) -> str:
    return Path(row["log_path"]).read_text()


def boot_child(
    tmp_path: Path, code: str, config: dict, python: str = sys.executable, gpu_ids=(), returncode: int = 0, **env: str
) -> tuple[dict, list[ProcessRecord]]:
    """Run `code` in a fresh interpreter as a process of a trial with this config: the bootstrap
    starts there through sitecustomize, as in every trial (the trial document is written by hand,
    as for a trial run without grid). Returns the JSON the code printed last and the records the
    trial's processes left, as the worker reads them (oldest first)."""
    records = tmp_path / "records"
    trial = tmp_path / "trial.json"
    trial.write_text(
        json.dumps(
            {
                "trial_id": "t",
                "attempt": 0,
                "config": config,
                "gpu_ids": list(gpu_ids),
                "records_dir": str(records),
                "workdir": str(tmp_path),
            }
        )
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "MXNET_", "GRID_", "KERAS_"))}
    full = {
        **base,
        "CUDA_VISIBLE_DEVICES": ",".join(gpu_ids),
        "PYTHONPATH": f"{SITE}{os.pathsep}{REPO}",
        "GRID_TRIAL": str(trial),
        **env,
    }
    proc = subprocess.run([python, "-c", code], env=full, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == returncode, proc.stderr[-3000:]
    found = read_records(str(records))
    assert found.unread == []
    lines = proc.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if lines else {"stderr": proc.stderr}), found


def notes_besides_the_window(row: dict) -> list[str] | None:
    """A row's notes less the one that says its steady window was too short to time (the tests'
    trials are short on purpose): what the test is about."""
    kept = [n for n in row["notes"] or [] if not n.startswith("steady window ")]
    return kept or None


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["--set", "epochs=2", "--set", "samples=1200"]


def run_example(name: str, results: Path, *sets: str) -> list[dict]:
    """An example's grid.yaml through `grid run --runner local`, small; its rows, every one ok."""
    argv = [
        "run",
        str(EXAMPLES / name / "grid.yaml"),
        "--results",
        str(results),
        "--runner",
        "local",
        "--plain",
        *SMALL,
        *sets,
    ]
    assert main(argv) == 0
    rows = ResultStore(str(results)).latest().to_pylist()
    failed = [(r["status"], r["error_message"], r["error_tail"]) for r in rows if r["status"] != "ok"]
    assert not failed, failed
    return rows


def history(folder: Path, run: Path, sweep: str, times: int = 3) -> Path:
    """A baseline history that accepted one run's sweep `times` times (as `grid compare --accept`
    does, a second apart): runs with no spread between them."""
    for i in range(times):
        accept(str(folder), str(run), sweep, keep=times, now=datetime(2026, 1, 1, 0, 0, i, tzinfo=timezone.utc))
    return folder
