"""Each trial's own folder (GRID_TRIAL_DIR, `{trial_dir}`): what a user's script writes there is
kept beside the results (uploaded to S3 there), a trial that writes nothing leaves nothing, a
rerun attempt finds what the earlier one left (a checkpoint to resume from), and a sweep whose
trials write into the workdir they all share is told so, by name."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from grid.cli import main
from grid.errors import SpecError
from grid.results.store import ResultStore
from grid.results.trialdir import TrialFolder
from grid.scheduler.workdir_writes import changed, snapshot
from grid.spec.parse import parse_spec
from grid.sweep import RunOptions, run_sweep

SCRIPT = Path(__file__).parent / "scripts" / "writes_files.py"


def sweep(
    project: Path, results: str, flags: str = "", state: Path | None = None, status: str = "ok"
) -> tuple[dict[str, dict], str]:
    spec = parse_spec(
        {
            "name": "own",
            "command": f"python writes_files.py --value {{value}} --out {{trial_dir}} {flags}",
            "axes": {"value": ["a", "b"]},
            "timeout_s": 60,
        },
        base_dir=project,
    )
    out = io.StringIO()
    opts = RunOptions(results=results, runner="local", cpu_slots=2, live=False, state_dir=str(state or project / ".st"))
    run_sweep(spec, opts, console=Console(file=out, width=400))
    rows = {r["value"]: r for r in ResultStore(results).latest("own").to_pylist()}
    assert all(r["status"] == status for r in rows.values()), [r["error_tail"] for r in rows.values()]
    return rows, " ".join(out.getvalue().split())


def run_then_retry(spec, project: Path) -> str:
    """Run a sweep, then again with --retry-failed; the results' location."""
    results = str(project / "r")
    for retry in (False, True):
        opts = RunOptions(
            results=results, runner="local", live=False, retry_failed=retry, state_dir=str(project / ".s")
        )
        run_sweep(spec, opts, console=Console(file=io.StringIO()))
    return results


@pytest.fixture
def project(tmp_path) -> Path:
    shutil.copy(SCRIPT, tmp_path / SCRIPT.name)
    return tmp_path


def test_each_attempt_keeps_what_it_wrote_in_its_own_folder(project):
    results = project / "results"  # inside the workdir, as `make grid` has it: not the trials' writes
    rows, out = sweep(project, str(results))
    for value, row in rows.items():
        folder = Path(row["trial_dir"])
        assert folder == results / "sweep=own" / "_trials" / row["trial_id"]
        assert (folder / "env.txt").read_text() == value  # $GRID_TRIAL_DIR
        assert (folder / "logs" / "arg.txt").read_text() == value  # {trial_dir} in the command
        assert f"its own folder (GRID_TRIAL_DIR): {folder}" in Path(row["log_path"]).read_text()
    assert "warning" not in out

    rows, out = sweep(project, str(project / "quiet"), "--nothing")
    assert [r["trial_dir"] for r in rows.values()] == [None, None]
    assert not any((project / "quiet" / "sweep=own" / "_trials").iterdir()), "no empty folder left"


def test_a_failed_trials_files_are_kept_and_shown_by_status(project, capsys):
    rows, _ = sweep(project, str(project / "results"), "--fail", status="error")
    assert all((Path(r["trial_dir"]) / "env.txt").is_file() for r in rows.values())
    capsys.readouterr()
    main(["status", str(project / "results")])
    out = capsys.readouterr().out
    for row in rows.values():
        assert f"    its files: {row['trial_dir']}" in out


def test_writes_into_the_shared_workdir_are_named(project):
    _, out = sweep(project, str(project / "results"), "--shared")
    assert (project / "checkpoint.txt").read_text() in ("a", "b")  # one trial's, the other's overwritten
    assert f"[grid] warning: files changed in the workdir that the 2 trials share ({project})" in out
    assert "while they ran: checkpoint.txt. A trial that writes there" in out
    assert "write under $GRID_TRIAL_DIR" in out


def test_a_function_finds_its_folder_with_gridtrial(project):
    (project / "fn.py").write_text(
        "from pathlib import Path\nfrom gridtrial import trial_dir\n\n\n"
        "def main(config):\n    Path(trial_dir(), 'model.txt').write_text(str(config['lr']))\n    return {}\n"
    )
    spec = parse_spec({"name": "fn", "function": "fn:main", "params": {"lr": 0.5}}, base_dir=project)
    run_sweep(
        spec, RunOptions(results=str(project / "r"), runner="local", live=False), console=Console(file=io.StringIO())
    )
    row = ResultStore(str(project / "r")).latest("fn").to_pylist()[0]
    assert row["status"] == "ok", row["error_tail"]
    assert (Path(row["trial_dir"]) / "model.txt").read_text() == "0.5"


def test_a_rerun_attempt_resumes_from_what_the_earlier_one_left(project):
    shutil.copy(SCRIPT.parent / "resumable.py", project)
    spec = parse_spec({"name": "resume", "command": "python resumable.py"}, base_dir=project)
    results = run_then_retry(spec, project)
    first, second = sorted(ResultStore(results).read("resume").to_pylist(), key=lambda r: r["attempt"])
    assert first["status"] == "error" and not first["notes"]
    assert second["status"] == "ok", second["error_tail"]
    assert second["trial_dir"] == first["trial_dir"]
    assert "its folder held 1 file(s) of earlier attempts when it started" in second["notes"][0]
    assert "resumed from 3, finished at step 5" in Path(second["log_path"]).read_text()
    assert (Path(second["trial_dir"]) / "ckpt" / "step.txt").read_text() == "5"


def test_grid_runs_own_output_into_the_workdir_is_not_named(project):
    (project / "grid.yaml").write_text(
        "name: own\ncommand: python writes_files.py --value {value} --shared\naxes: {value: [a, b]}\n"
    )
    argv = [sys.executable, "-m", "grid", "run", "grid.yaml", "--runner", "local", "--plain", "--state-dir", ".st"]
    with open(project / "run.log", "w") as log:  # grid run ... > run.log, in the project folder
        subprocess.run(argv, cwd=project, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=120)
    out = " ".join((project / "run.log").read_text().split())
    assert "while they ran: checkpoint.txt. A trial" in out  # run.log itself is not named


@pytest.mark.slow
def test_keras_backup_and_restore_resumes_with_no_change_to_the_script(project):
    shutil.copy(SCRIPT.parent / "keras_backup.py", project)
    (project / "cut-once").write_text("")
    spec = parse_spec(
        {
            "name": "backup",
            "command": "python keras_backup.py --backup {trial_dir}",
            "params": {"backend": "jax"},
            "timeout_s": 300,
        },
        base_dir=project,
    )
    results = run_then_retry(spec, project)
    first, second = sorted(ResultStore(results).read("backup").to_pylist(), key=lambda r: r["attempt"])
    assert first["status"] == "error" and first["exit_code"] == 3 and first["trial_dir"]
    assert second["status"] == "ok", second["error_tail"]
    assert "epochs run in this process: 3" in Path(second["log_path"]).read_text()  # epochs 4-6, not 1-6
    assert len(second["epoch_times"]) == 3
    assert second["trial_dir"] is None  # BackupAndRestore deletes its backup when training ends


def test_a_folder_the_store_cannot_make_costs_the_trial_nothing(project):
    results = project / "results"
    (results / "sweep=own").mkdir(parents=True)
    (results / "sweep=own" / "_trials").write_text("")  # not a folder: no trial folder can be made there
    rows, _ = sweep(project, str(results))
    for value, row in rows.items():
        assert row["status"] == "ok" and "its folder could not be made in" in row["notes"][0]
        assert (Path(row["trial_dir"]) / "env.txt").read_text() == value  # kept on the worker's machine
        assert "kept on" in row["notes"][-1]


def test_spec_reserves_trial_dir_and_fills_its_placeholder(project):
    with pytest.raises(SpecError, match="params.trial_dir: 'trial_dir' is reserved: gpu-grid sets it"):
        parse_spec(
            {"name": "x", "command": "python writes_files.py", "params": {"trial_dir": "/tmp"}}, base_dir=project
        )
    parse_spec({"name": "x", "command": "python writes_files.py --out {trial_dir}"}, base_dir=project)


def test_workdir_snapshot_leaves_out_results_hidden_folders_and_bytecode(tmp_path, monkeypatch):
    for name in ("keep/a.txt", "results/r.parquet", ".git/HEAD", "pkg/__pycache__/m.pyc"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0")
    before = snapshot(str(tmp_path), [str(tmp_path / "results")])
    assert before.files is not None and set(before.files) == {"keep/a.txt"}
    for name in ("keep/a.txt", "new.txt", "results/s.parquet", ".git/index", "pkg/__pycache__/n.pyc"):
        (tmp_path / name).write_text("changed")
    assert changed(before, snapshot(str(tmp_path), [str(tmp_path / "results")])) == ["keep/a.txt", "new.txt"]
    monkeypatch.setattr("grid.scheduler.workdir_writes.MAX_ENTRIES", 1)
    assert snapshot(str(tmp_path), []).files is None  # too large: not checked, nothing claimed
    assert changed(before, snapshot(str(tmp_path), [])) == []


def test_the_sync_interval_is_read_when_an_attempt_starts(monkeypatch):
    """GRID_TRIAL_DIR_SYNC_S, set after grid was imported, paces the uploads of a running trial's
    settled files (results elsewhere: pyarrow's in-memory filesystem); a bad value is refused by name."""
    folder = TrialFolder(ResultStore("mock:///sync"), "sync", "t1", 0)
    local, _ = folder.open()
    monkeypatch.setenv("GRID_TRIAL_DIR_SYNC_S", "0.1")
    with folder.syncing(local):
        Path(local, "ckpt.txt").write_text("1")
        deadline = time.monotonic() + 10  # the default, 60 s, would not send it by then
        while "ckpt.txt" not in folder._remote_files():
            assert time.monotonic() < deadline, "not sent"
            time.sleep(0.05)
    monkeypatch.setenv("GRID_TRIAL_DIR_SYNC_S", "soon")
    refused = pytest.raises(ValueError, match="GRID_TRIAL_DIR_SYNC_S: received 'soon', expected seconds > 0")
    with refused, folder.syncing(local):
        pass
    assert folder.close(local) == "mock://sync/sweep=sync/_trials/t1"
