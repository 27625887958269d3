"""The `function:` path: the function gets the trial's config, its dict lands in the row, an
exception is the row's error (an out-of-memory one becomes `oom`), and nothing is left half-written."""

from __future__ import annotations

import pytest
from trials import log_of, ok, run_spec_trial

from grid.errors import SpecError
from grid.spec.parse import parse_spec

MODULE = """
import time

def train(config):
    time.sleep(0.01)
    if config["fail"] == "oom":
        raise MemoryError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB")
    if config["fail"] == "exit":
        raise SystemExit(3)
    if config["fail"] == "type":
        return [1, 2]
    return {"epoch_times": [2.0, 1.0, 1.2], "images_per_epoch": 600, "score": config["lr"] * 10, "tag": "fine",
            "status": "hijack"}
"""


@pytest.fixture
def module(tmp_path):
    (tmp_path / "mytrain.py").write_text(MODULE)
    return tmp_path


def _row(tmp_path, fail: str) -> dict:
    return run_spec_trial(tmp_path, {"function": "mytrain:train", "params": {"lr": 0.5, "fail": fail}})


def test_returned_dict_is_merged_into_the_row(module):
    row = ok(_row(module, "none"))
    assert row["epoch_times"] == [2.0, 1.0, 1.2] and row["first_epoch_s"] == 2.0 and row["steady_epoch_s"] == 1.1
    assert row["images_per_s"] == pytest.approx((600 / 1.0 + 600 / 1.2) / 2)  # the median of the steady epochs' rates
    assert row["score"] == 5.0 and row["tag"] == "fine"
    assert row["status"] == "ok" and any("reported status not kept" in n for n in row["notes"])
    assert row["workload"] == "function" and row["target"] == "function mytrain:train"
    assert row["script"] == "mytrain.py" and len(row["script_sha256"]) == 64
    assert row["command"].endswith("-m gridtrial")


def test_exception_is_the_rows_error_and_oom_is_recognised(module):
    row = _row(module, "oom")
    assert row["status"] == "oom" and row["error_type"] == "builtins.MemoryError"
    assert "RESOURCE_EXHAUSTED" in row["error_message"] and "Traceback" in row["error_tail"]
    assert row["exit_code"] == 1


def test_system_exit_and_a_wrong_return_type(module):
    assert _row(module, "exit")["exit_code"] == 3
    row = _row(module, "type")
    assert row["status"] == "error" and "returns a dict of results or None" in row["error_message"]
    assert "TypeError" in log_of(row)


def test_function_that_does_not_exist_is_a_spec_error(module):
    with pytest.raises(SpecError, match="mytrain.py defines no 'trian'"):
        parse_spec({"name": "t", "function": "mytrain:trian"}, base_dir=module)
    with pytest.raises(SpecError, match="module 'nosuch.mod' not found"):
        parse_spec({"name": "t", "function": "nosuch.mod:train"}, base_dir=module)
    with pytest.raises(SpecError, match="expected 'pkg.module:function'"):
        parse_spec({"name": "t", "function": "mytrain.train"}, base_dir=module)
