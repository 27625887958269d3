"""OOM recognition on real error texts of every backend, and real OOMs ending a trial as `oom`.

Each fixture in tests/fixtures/oom/ is a real text: its first line names where it came from,
then `type:` (the exception's qualified name, or none for a bare log line), `expect:` and the
message after `---`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from trials import run_spec_trial

from grid.trial.oom import AllocatorWatch, allocator_gave_up, is_oom

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


@pytest.mark.parametrize(
    "error_type, message",
    [
        ("builtins.ValueError", "images=16 is fewer than one global batch of 32"),
        ("builtins.KeyError", "'memory'"),
        ("builtins.RuntimeError", "gpus=2 needs 2 visible GPUs; CUDA_VISIBLE_DEVICES=''"),
        (None, ""),
        (None, None),
    ],
)
def test_other_errors_are_not_oom(error_type, message):
    assert not is_oom(error_type, message)


def _trial_that_allocates(tmp_path: Path, statement: str, backend: str) -> dict:
    """A script that allocates far more than any machine has, run as a trial's command."""
    return run_spec_trial(tmp_path, {"command": ["python", "-c", statement], "params": {"backend": backend}})


@pytest.mark.slow
def test_a_real_torch_oom_ends_the_trial_as_oom(tmp_path):
    row = _trial_that_allocates(tmp_path, "import torch; torch.empty(2**50)", "torch")
    assert row["status"] == "oom"
    assert row["error_type"] == "builtins.RuntimeError"
    assert "can't allocate memory" in row["error_message"]


@pytest.mark.slow
def test_a_real_jax_oom_ends_the_trial_as_oom(tmp_path):
    row = _trial_that_allocates(tmp_path, "import jax.numpy as jnp; jnp.zeros((2**40,)).block_until_ready()", "jax")
    assert row["status"] == "oom"
    assert row["error_type"].endswith("JaxRuntimeError")
    assert row["error_message"].startswith("RESOURCE_EXHAUSTED: Out of memory")


ALLOCATOR = sorted((Path(__file__).parent / "fixtures" / "allocator").glob("*.txt"))


@pytest.mark.parametrize("path", ALLOCATOR, ids=lambda p: p.stem)
def test_an_allocator_giving_up_is_told_from_one_that_can_do_without(path):
    """A BFC allocator's failed allocation (the summary follows it) against scratch space its caller
    can do without: real log texts."""
    head, text = path.read_text().split("---\n", 1)
    expected = head.splitlines()[1] == "expect: gave up"
    line = allocator_gave_up(text)
    assert (line is not None) is expected
    if expected:
        assert line.startswith("Allocator (GPU_0_bfc) ran out of memory trying to allocate 9.00MiB (rounded to")


def test_the_watch_reads_a_log_as_it_grows(tmp_path):
    """Only what follows `offset` counts, and a report split across two reads is still seen."""
    text = (Path(__file__).parent / "fixtures" / "allocator" / "jax-gpu-bfc-gave-up.txt").read_text().split("---\n")[1]
    log = tmp_path / "trial.log"
    log.write_text(text)  # an earlier attempt's text, before the offset
    watch = AllocatorWatch(str(log), offset=log.stat().st_size)
    assert watch.gave_up() is None
    cut = text.index("Current allocation") + 7
    with open(log, "a") as f:
        f.write("training...\n" + text[:cut])
    assert watch.gave_up() is None
    with open(log, "a") as f:
        f.write(text[cut:])
    assert watch.gave_up().startswith("Allocator (GPU_0_bfc) ran out of memory trying to allocate 9.00MiB")
