"""The training loops' examples (examples/lightning: a PyTorch Lightning script, examples/huggingface:
a Hugging Face Trainer script) run for real through `grid run`, unmodified, with the rows they promise."""

from __future__ import annotations

import json

import pytest
import yaml
from trials import EXAMPLES, run_example

from grid.cli import main
from grid.results.store import ResultStore


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
