"""The user's own command through grid: placeholders, environment, trial JSON, workdir, the trial's
interpreter, Keras measured with no change to the script, DDP ranks capped, a missing program."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from trials import log_of, notes_besides_the_window, ok, run_spec_trial

from grid.cli import main
from grid.results.store import ResultStore

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture
def project(tmp_path):
    for script in SCRIPTS.glob("*.py"):
        shutil.copy(script, tmp_path / script.name)
    return tmp_path


def printed(row: dict) -> dict:
    return json.loads(next(line for line in log_of(row).splitlines() if line.startswith("{")))


def test_command_gets_placeholders_variables_trial_json_and_runs_in_the_workdir(project):
    row = ok(
        run_spec_trial(
            project,
            {
                "command": "python echo_trial.py --lr {lr} --id {trial_id}",
                "params": {"lr": 0.001, "tag": "a b"},
                "metrics": {"score": "score: ([0-9.]+)", "missing": "nope (\\d)"},
            },
        )
    )
    seen = printed(row)
    assert seen["argv"] == ["--lr", "0.001", "--id", row["trial_id"]] and seen["lr"] == "0.001" and seen["tag"] == "a b"
    assert seen["trial_config"] == {"lr": 0.001, "tag": "a b"} and seen["trial_id"] == row["trial_id"]
    assert seen["cwd"] == str(project) and seen["python"] == sys.executable
    assert row["command"] == f"{sys.executable} echo_trial.py --lr 0.001 --id {row['trial_id']}"
    assert row["score"] == 0.75 and row["missing"] is None
    assert row["notes"] == ["metric missing: pattern 'nope (\\\\d)' matched no output line"]
    assert row["processes"] == 0 and row["lr"] == 0.001 and row["wall_s"] > 0 and row["peak_rss_mib"] > 0


def test_leading_python_is_the_backends_interpreter(project):
    venv = project / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python3.11").symlink_to(sys.executable)
    row = ok(
        run_spec_trial(
            project,
            {
                "command": "python3 echo_trial.py",
                "params": {"backend": "torch"},
                "interpreters": {"torch": "venv/bin/python3.11"},
            },
        )
    )
    seen = printed(row)
    assert seen["python"] == str(venv / "python3.11") and seen["path0"] == str(venv)


def test_a_missing_program_ends_its_trial_as_error_and_the_sweep_goes_on(project, capsys):
    (project / "grid.yaml").write_text(
        yaml.safe_dump({"name": "progs", "command": "{prog} hello", "axes": {"prog": ["echo", "no-such-trainer"]}})
    )
    assert (
        main(["run", str(project / "grid.yaml"), "--results", str(project / "r"), "--runner", "local", "--plain"]) == 0
    )
    rows = {r["prog"]: r for r in ResultStore(str(project / "r")).latest().to_pylist()}
    assert rows["echo"]["status"] == "ok"
    bad = rows["no-such-trainer"]
    assert bad["status"] == "error" and bad["error_type"] == "CommandNotFound"
    assert bad["error_message"].startswith("program 'no-such-trainer' not found")


@pytest.mark.slow
def test_keras_fit_called_twice(project):
    row = ok(run_spec_trial(project, {"command": "python keras_fit_twice.py", "params": {"backend": "jax"}}))
    assert row["fit_calls"] == 2 and len(row["epoch_times"]) == 5
    times = row["epoch_times"]
    assert row["steady_epoch_s"] == pytest.approx(sorted([times[1], times[3], times[4]])[1])
    assert row["global_batch"] == 64 and row["images_per_epoch"] == 192  # 3 steps of the second fit
    assert row["val_accuracy"] is not None and row["loss"] == json.loads(row["series_json"])["loss"][-1]
    assert row["framework"] == "jax" and row["processes"] == 1 and notes_besides_the_window(row) is None


@pytest.mark.slow
def test_keras_fed_by_tf_data(project):
    row = ok(run_spec_trial(project, {"command": "python keras_tf_data.py", "params": {"backend": "tensorflow"}}))
    assert row["global_batch"] == 16 and row["images_per_epoch"] == 256 and len(row["epoch_times"]) == 3
    assert row["images_per_s"] > 0 and row["eval_loss"] > 0 and row["eval_accuracy"] is not None
    assert notes_besides_the_window(row) == ["images/s counts batches of 16: the dataset's batch dimension"]


@pytest.mark.slow
def test_keras_fed_by_a_py_dataset_counts_the_trials_batch_size_or_says_what_to_give(project):
    bare = ok(run_spec_trial(project, {"command": "python keras_py_dataset.py", "params": {"backend": "jax"}}))
    assert len(bare["epoch_times"]) == 3 and bare["images_per_s"] is None and bare["global_batch"] is None
    assert notes_besides_the_window(bare) == [
        "images/s unknown: the batch size is not shown by the data (Batches); give the trial a batch_size "
        "(in the spec's params or axes) and images/s counts batches of it"
    ]
    given = {"name": "given", "command": "python keras_py_dataset.py", "params": {"backend": "jax", "batch_size": 32}}
    row = ok(run_spec_trial(project, given))
    assert row["global_batch"] == 32 and row["images_per_epoch"] == 128 and row["images_per_s"] > 0
    assert notes_besides_the_window(row) == [
        "images/s counts batches of 32: the trial's batch_size (the data does not show its batch size)"
    ]


@pytest.mark.slow
def test_keras_with_the_scripts_own_callbacks(project):
    row = ok(
        run_spec_trial(
            project,
            {
                "command": "python keras_own_callback.py",
                "params": {"backend": "torch"},
                "metrics": {"cb_loss": r"callback epoch \d+ loss ([0-9.]+)"},
            },
        )
    )
    assert "callback saw 4 epochs" in log_of(row) and len(row["epoch_times"]) == 4
    assert row["cb_loss"] == pytest.approx(row["loss"], abs=1e-6)
    assert json.loads(row["series_json"])["cb_loss"] == pytest.approx(json.loads(row["series_json"])["loss"], abs=1e-6)
    assert row["images_per_epoch"] == 200 and row["global_batch"] == 20


@pytest.mark.slow
def test_torchrun_ranks_each_get_the_memory_cap(project):
    command = "python -m torch.distributed.run --standalone --nproc-per-node {nproc} ddp_caps.py"
    row = ok(
        run_spec_trial(
            project, {"command": command, "params": {"backend": "torch", "memory_fraction": 0.25, "nproc": 2}}
        )
    )
    cap = "torch: set_per_process_memory_fraction(0.25) (no GPU visible: not applied)"
    assert row["cap_rank0"] == cap and row["cap_rank1"] == cap
    assert row["fraction_rank0"] == 0.25 and row["fraction_rank1"] == 0.25
    assert row["processes"] == 3  # torchrun's own process and its two ranks, each under the bootstrap
    assert row["memory_cap_method"] == f"{cap}, in each of 3 processes"
    assert "rank 1 of 2 done" in log_of(row)
    assert row["start"] == "warm" and "torchrun's 2 ranks forked from the warm launcher" in row["notes"]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["python -m torch.distributed.run", "torchrun"])
def test_a_forked_torchrun_rank_ends_with_its_own_exit_status(project, launcher):
    """A rank forked for torch's launcher ends as a cold one would: its exit status reaches torchrun
    (through the relay torchrun started), which fails the trial and names the rank's status. The
    interpreter's `torchrun` script runs as the module: warm, its ranks forked too."""
    command = f"{launcher} --standalone --nproc-per-node 2 ddp_fail.py --fail-rank 1"
    row = run_spec_trial(project, {"command": command, "params": {"backend": "torch"}})
    log = log_of(row)
    assert row["status"] == "error" and row["start"] == "warm", (row["status"], log)
    assert "exitcode  : 3" in log and "ddp_fail.py FAILED" in log, log
    assert "torchrun's 2 ranks forked from the warm launcher" in (row["notes"] or []), row["notes"]


@pytest.mark.slow
def test_torchrun_ranks_start_cold_with_warm_start_false(project):
    command = "python -m torch.distributed.run --standalone --nproc-per-node 2 ddp_fail.py"
    row = ok(run_spec_trial(project, {"command": command, "params": {"backend": "torch", "warm_start": False}}))
    assert row["start"] == "cold" and row["processes"] == 3 and not any("forked" in n for n in row["notes"] or [])
