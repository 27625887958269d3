"""The examples (examples/: an unmodified Keras script, a plain PyTorch loop, a plain JAX script) run
for real through `grid run` on each backend they support, with the rows they promise. The training
loops' examples (Lightning, Hugging Face) are in test_examples_loops.py: a file of their own, so
that test processes take them apart."""

from __future__ import annotations

from pathlib import Path

import pytest
from trials import notes_besides_the_window, run_example

from grid.cli import main
from grid.results.store import ResultStore


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


@pytest.mark.slow
def test_a_plain_pytorch_loop_gets_its_epochs_from_its_dataloader(tmp_path):
    """No framework loop, no pattern: each full pass of the training DataLoader with gradients on
    is an epoch; the test pass under no_grad and a pass cut short are not; the notes say so."""
    (tmp_path / "plain_loop.py").write_bytes((Path(__file__).parent / "scripts" / "plain_loop.py").read_bytes())
    spec = tmp_path / "grid.yaml"
    spec.write_text("name: plain\ncommand: python plain_loop.py 3\nparams: {backend: torch}\n")
    assert main(["run", str(spec), "--results", str(tmp_path / "r"), "--runner", "local", "--plain"]) == 0
    (row,) = ResultStore(str(tmp_path / "r")).latest().to_pylist()
    assert row["status"] == "ok" and len(row["epoch_times"]) == 3 and row["images_per_epoch"] == 96
    assert row["images_per_s"] > 0 and row["fit_calls"] is None and row["global_batch"] == 10
    assert notes_besides_the_window(row) == [
        "epochs: 3 full pass(es) of a torch DataLoader with gradients on (passes under no_grad left out)"
    ]
