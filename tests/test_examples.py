"""The examples (examples/: an unmodified Keras script, a plain PyTorch loop, a plain JAX script, a
PyTorch Lightning script, a Hugging Face Trainer script) run for real through `grid run` on each
backend they support, with the rows they promise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from trials import notes_besides_the_window

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


@pytest.mark.slow
def test_lightning_example_is_measured_with_no_change(tmp_path):
    """Lightning's Trainer gets gpu-grid's callback: epochs (validation left out), samples/s from the
    batches, every self.log()ged value with its per-epoch series, the cap, torch's counters."""
    (row,) = run_example("lightning", tmp_path, "--set", "batch_size=[16]", "--set", "memory_fraction=[0.5]")
    assert row["framework"] == "torch" and len(row["epoch_times"]) == 2 and row["fit_calls"] == 1
    assert row["images_per_epoch"] == 1200 and row["global_batch"] == 16  # 75 batches of 16
    assert row["images_per_s"] > 0 and row["steady_epoch_s"] == row["epoch_times"][1]
    assert row["val_loss"] > 0 and 0 <= row["val_acc"] <= 1 and row["train_loss"] > 0 and row["val_ppl"] > 1
    series = json.loads(row["series_json"])
    assert len(series["val_loss"]) == 2 and series["val_loss"][-1] == row["val_loss"]
    assert json.loads(row["metric_goals_json"])["val_acc"] == "max"
    assert row["memory_cap_method"] == "torch: set_per_process_memory_fraction(0.5) (no GPU visible: not applied)"
    assert json.loads(row["framework_mem_json"]) and row["trial_dir"]  # torch's counters; its checkpoints
    assert not row["notes"], row["notes"]


@pytest.mark.slow
def test_huggingface_example_is_measured_with_no_change(tmp_path):
    """The Trainer gets gpu-grid's TrainerCallback: epochs, samples/s from the batches it trained on,
    the log history's last values and per-epoch series, the cap, torch's counters."""
    (row,) = run_example("huggingface", tmp_path, "--set", "batch_size=[16]", "--set", "memory_fraction=[0.5]")
    assert row["framework"] == "torch" and len(row["epoch_times"]) == 2 and row["fit_calls"] == 1
    assert row["images_per_epoch"] == 1200 and row["images_per_s"] > 0 and row["steady_epoch_s"] > 0
    assert row["loss"] > 0 and row["eval_loss"] > 0 and 0 <= row["eval_accuracy"] <= 1
    assert row["learning_rate"] >= 0 and row["train_loss"] > 0
    series = json.loads(row["series_json"])
    assert len(series["eval_loss"]) == 2 and series["eval_loss"][-1] == row["eval_loss"]
    assert row["memory_cap_method"] == "torch: set_per_process_memory_fraction(0.5) (no GPU visible: not applied)"
    assert not row["notes"], row["notes"]


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


@pytest.mark.slow
def test_a_lightning_search_probes_end_early_and_the_answer_trains_in_full(tmp_path):
    """`{batch_size}` in the Lightning example's command with a search: its probes end after
    probe_steps optimizer steps (Lightning's callback tells the bootstrap of each), the confirmation
    trains every epoch."""
    spec = tmp_path / "search.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "lightning-search",
                "workdir": str(EXAMPLES / "lightning"),
                "command": "python train.py --batch-size {batch_size} --epochs 2 --samples 128 --out {trial_dir}",
                "params": {"backend": "torch"},
                "search": {
                    "largest": "batch_size",
                    "low": 8,
                    "high": 16,
                    "tolerance": 7,
                    "confirm": 1,
                    "probe_steps": 2,
                },
            }
        )
    )
    assert main(["run", str(spec), "--results", str(tmp_path / "r"), "--runner", "local", "--plain"]) == 0
    rows = ResultStore(str(tmp_path / "r")).latest().to_pylist()
    probes = [r for r in rows if r["search_role"] == "probe"]
    (confirm,) = [r for r in rows if r["search_role"] == "confirm"]
    assert len(probes) == 2 and all(r["status"] == "ok" for r in rows)
    assert all(
        any(n.startswith("a probe: ended by gpu-grid after 2 optimizer steps") for n in r["notes"]) for r in probes
    )
    assert confirm["batch_size"] == 16 and len(confirm["epoch_times"]) == 2 and confirm["images_per_epoch"] == 128
