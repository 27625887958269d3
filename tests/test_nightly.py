"""`make nightly`'s script end to end on sleep trials: the first night becomes the baseline, the next
passes, a night that lacks a config fails as incomplete (3), and a changed spec is refused (2)
instead of comparing nothing and passing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "nightly",
    "workload": "sleep",
    "params": {"seconds": 0.1},
    "axes": {"backend": ["none", "jax"]},
    "repeats": 2,
    "timeout_s": 60,
}


def night(tmp: Path, spec: dict) -> tuple[int, str, Path]:
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {
        **os.environ,
        "SPEC": str(path),
        "BASELINE": str(tmp / "baseline"),
        "RUNS": str(tmp / "nightly"),
        "GRID": str(Path(sys.executable).parent / "grid"),
        "METRIC": "first_epoch_s",
        "GRID_ARGS": "--runner local --cpu-slots 2",
    }
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "nightly.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    return done.returncode, " ".join((done.stdout + done.stderr).split()), (tmp / "nightly" / "latest").resolve()


@pytest.mark.slow
def test_nightly_baseline_pass_incomplete_and_changed_spec(tmp_path):
    code, out, run = night(tmp_path, SPEC)
    assert code == 0, out
    assert "no baseline at" in out and (tmp_path / "baseline").is_dir() and (run / "report" / "index.html").is_file()

    code, out, run = night(tmp_path, SPEC)
    assert code == 0, out
    assert "nightly: no regression against" in out
    assert json.loads((run / "verdict.json").read_text())["counts"]["unchanged"] == 2

    code, out, run = night(tmp_path, {**SPEC, "axes": {"backend": ["none"]}})
    assert code == 3, out
    assert "nightly: INCOMPLETE: this run lacks configs of" in out
    assert json.loads((run / "verdict.json").read_text())["verdict"] == "incomplete"

    code, out, _ = night(tmp_path, {**SPEC, "params": {"seconds": 0.2}})
    assert code == 2, out
    assert "nothing can be compared (the spec changed?)" in out and "--ignore seconds" in out
    assert "nightly: compare could not decide (exit 2)" in out
