"""The child protocol: one result JSON, written atomically, with what was known before a failure."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = """
import sys
from tasks import protocol

def run(trial):
    protocol.record(framework="jax", memory_cap_method="jax: XLA_CLIENT_MEM_FRACTION=0.01", import_s=1.5)
    if trial["config"]["fail"]:
        raise MemoryError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB")
    return {"epoch_times": [2.0, 1.0, 1.2]}

protocol.main(run, [sys.argv[1]])
"""


def _run(tmp_path, fail: bool) -> tuple[int, dict]:
    trial = tmp_path / "trial.json"
    trial.write_text(json.dumps({"trial_id": "t", "attempt": 2, "config": {"fail": fail},
                                 "result_path": str(tmp_path / "result.json")}))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(trial)], capture_output=True, text=True)
    assert not list(tmp_path.glob("result.json.tmp-*")), "temporary result left behind"
    return proc.returncode, json.loads((tmp_path / "result.json").read_text())


def test_ok_result(tmp_path):
    code, result = _run(tmp_path, fail=False)
    assert code == 0 and result["status"] == "ok" and result["attempt"] == 2
    assert result["epoch_times"] == [2.0, 1.0, 1.2] and result["ended_at"] >= result["started_at"]


def test_failure_keeps_what_was_known(tmp_path):
    code, result = _run(tmp_path, fail=True)
    assert code == 1 and result["status"] == "oom" and result["error_type"] == "builtins.MemoryError"
    assert result["memory_cap_method"] == "jax: XLA_CLIENT_MEM_FRACTION=0.01" and result["framework"] == "jax"
    assert "RESOURCE_EXHAUSTED" in result["error_message"] and "Traceback" in result["error_tail"]
