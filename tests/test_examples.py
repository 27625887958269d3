"""The three examples (examples/: an unmodified Keras script, a plain PyTorch loop, a plain JAX
script) run for real through `grid run` on each backend they support, with the rows they promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from grid.cli import main
from grid.results.store import ResultStore

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["--set", "epochs=2", "--set", "samples=1200"]


def run_example(name: str, results: Path, *sets: str) -> list[dict]:
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


@pytest.mark.slow
def test_keras_example_on_tensorflow_jax_and_torch(tmp_path):
    rows = run_example("keras", tmp_path, "--set", "batch_size=[128]")
    assert sorted(r["backend"] for r in rows) == ["jax", "tensorflow", "torch"]
    for row in rows:
        assert row["framework"] == row["backend"] and row["fit_calls"] == 1 and len(row["epoch_times"]) == 2
        assert row["global_batch"] == 128 and row["images_per_s"] > 0
        # validation (10% of the data, forward only) is left out of images/s, but training is most of the epoch
        assert row["images_per_s"] <= row["images_per_epoch"] / (0.5 * row["steady_epoch_s"])
        assert 0 <= row["test_acc"] <= 1 and row["test_acc"] == pytest.approx(row["eval_accuracy"], abs=1e-4)
        assert row["val_accuracy"] is not None and row["script"] == "train.py"


@pytest.mark.slow
def test_pytorch_example_takes_its_figures_from_its_output(tmp_path):
    (row,) = run_example("pytorch", tmp_path, "--set", "batch_size=[128]", "--set", "memory_fraction=[0.5]")
    assert row["framework"] == "torch" and len(row["epoch_times"]) == 2 and row["images_per_epoch"] == 1200
    assert row["images_per_s"] == pytest.approx(1200 / row["steady_epoch_s"])
    assert 0 <= row["test_acc"] <= 100 and row["test_loss"] > 0
    assert row["memory_cap_method"] == "torch: set_per_process_memory_fraction(0.5) (no GPU visible: not applied)"


@pytest.mark.slow
def test_jax_example(tmp_path):
    (row,) = run_example("jax", tmp_path, "--set", "batch_size=[128]", "--set", "memory_fraction=[0.25]")
    assert row["framework"] == "jax" and len(row["epoch_times"]) == 2 and row["images_per_s"] > 0
    assert row["memory_cap_method"] == "jax: XLA_CLIENT_MEM_FRACTION=0.25 (no GPU visible: not applied)"
    assert 0 <= row["test_acc"] <= 1
