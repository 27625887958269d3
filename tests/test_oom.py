"""OOM recognition on real error texts of every backend, and real OOMs ending a trial as `oom`.

Each fixture in tests/fixtures/oom/ is a real text: its first line names where it came from,
then `type:` (the exception's qualified name, or none for a bare log line), `expect:` and the
message after `---`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.oom import is_oom
from trials import REPO

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "oom").glob("*.txt"))


def read_fixture(path: Path) -> tuple[str | None, str, bool]:
    head, message = path.read_text().split("---\n", 1)
    lines = head.splitlines()
    assert lines[0].startswith("# source: "), f"{path.name}: first line must name the source"
    fields = dict(line.split(": ", 1) for line in lines[1:])
    error_type = None if fields["type"] == "none" else fields["type"]
    return error_type, message, fields["expect"] == "oom"


def test_fixtures_cover_every_backend_and_some_non_oom_errors():
    names = [p.name for p in FIXTURES]
    for prefix in ("tensorflow-", "jax-", "torch-", "mxnet-", "not-oom-"):
        assert any(n.startswith(prefix) for n in names), f"no fixture {prefix}*"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_is_oom_on_real_error_texts(path):
    error_type, message, expected = read_fixture(path)
    assert is_oom(error_type, message) is expected
    # A child that died without a result leaves only its log: "Type: message" lines.
    log_line = f"{error_type}: {message}" if error_type else message
    assert is_oom(None, f"Traceback (most recent call last):\n  ...\n{log_line}") is expected


@pytest.mark.parametrize("error_type, message", [
    ("builtins.ValueError", "images=16 is fewer than one global batch of 32"),
    ("builtins.KeyError", "'memory'"),
    ("builtins.RuntimeError", "gpus=2 needs 2 visible GPUs; CUDA_VISIBLE_DEVICES=''"),
    (None, ""),
    (None, None),
])
def test_other_errors_are_not_oom(error_type, message):
    assert not is_oom(error_type, message)


def _trial_that_allocates(tmp_path: Path, statement: str, backend: str) -> dict:
    """A trial process whose `run` allocates far more than any machine has, through the protocol."""
    trial = tmp_path / "trial.json"
    trial.write_text(json.dumps({"trial_id": "oom", "attempt": 1, "config": {}, "result_path": str(tmp_path / "r.json")}))
    code = f"from tasks import protocol\ndef run(trial):\n    {statement}\nprotocol.main(run, [{str(trial)!r}])"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": backend, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    return json.loads((tmp_path / "r.json").read_text())


def test_a_real_torch_oom_ends_the_trial_as_oom(tmp_path):
    result = _trial_that_allocates(tmp_path, "import torch; torch.empty(2**50)", "torch")
    assert result["status"] == "oom"
    assert result["error_type"] == "builtins.RuntimeError"
    assert "can't allocate memory" in result["error_message"]


def test_a_real_jax_oom_ends_the_trial_as_oom(tmp_path):
    result = _trial_that_allocates(tmp_path, "import jax.numpy as jnp; jnp.zeros((2**40,)).block_until_ready()", "jax")
    assert result["status"] == "oom"
    assert result["error_type"].endswith("JaxRuntimeError")
    assert result["error_message"].startswith("RESOURCE_EXHAUSTED: Out of memory")
