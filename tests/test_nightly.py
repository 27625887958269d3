"""`make nightly`'s script end to end on sleep trials: the first night starts the history, the next
pass and join it, a night whose trials failed is a regression and never joins it, a night that lacks
a config fails as incomplete (3) and stays out, and a changed spec is refused (2) instead of comparing
nothing and passing."""

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
        "THRESHOLD": "60%",  # 0.1 s sleeps judged against 1-2 runs: a band under 60% whatever the jitter
        "CONFIRM": "0",
        "GRID_ARGS": "--runner local --cpu-slots 2",
    }
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "nightly.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    return done.returncode, " ".join((done.stdout + done.stderr).split()), (tmp / "nightly" / "latest").resolve()


def accepted(tmp: Path) -> int:
    return len(list((tmp / "baseline" / "runs").iterdir()))


@pytest.mark.slow
def test_nightly_baseline_pass_incomplete_and_changed_spec(tmp_path):
    code, out, run = night(tmp_path, SPEC)
    assert code == 0, out
    assert "no history at" in out and accepted(tmp_path) == 1 and (run / "report" / "index.html").is_file()

    code, out, run = night(tmp_path, SPEC)
    assert code == 0, out
    assert "nightly: no regression against" in out and "added to the history" in out and accepted(tmp_path) == 2
    verdict = json.loads((run / "verdict.json").read_text())
    assert verdict["counts"]["unchanged"] == 2 and len(verdict["baseline_runs"]) == 1
    assert (run / "report" / "history" / "history-first_epoch_s.png").is_file()
    page = (run / "report" / "index.html").read_text()  # the verdict on top, its plot inside the page
    assert page.index('id="verdict"') < page.index('id="sweep-nightly"') and page.count("data:image/png") >= 1
    assert '<span class="verdict-ok">ok</span>' in page and '<td class="verdict-unchanged">unchanged</td>' in page

    code, out, run = night(tmp_path, {**SPEC, "memory_limit_mib": 4})  # the same configs, over their budget
    assert code == 1, out  # every trial failed: a failed night never joins the history
    assert "not added to the history: the verdict is regression" in out and accepted(tmp_path) == 2

    code, out, run = night(tmp_path, {**SPEC, "axes": {"backend": ["none"]}})
    assert code == 3, out
    assert "nightly: INCOMPLETE: this run lacks configs of" in out
    assert json.loads((run / "verdict.json").read_text())["verdict"] == "incomplete"
    assert accepted(tmp_path) == 2

    code, out, _ = night(tmp_path, {**SPEC, "params": {"seconds": 0.2}})
    assert code == 2, out
    assert "nothing can be compared (the spec changed?)" in out and "--ignore seconds" in out
    assert "nightly: compare could not decide (exit 2)" in out
