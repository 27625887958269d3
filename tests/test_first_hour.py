"""What a new user hit in the first hour: a misspelled program is a spec error at `grid plan`;
`interpreters: {none: ...}` runs the trials without a backend; the README names the project's own
offline bundle script, not a path outside the repository."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from grid.cli import main
from grid.errors import SpecError
from grid.results.store import ResultStore
from grid.spec.parse import parse_spec

REPO = Path(__file__).resolve().parents[1]


def test_a_program_neither_on_path_nor_a_file_is_a_spec_error(tmp_path, capsys):
    (tmp_path / "train.py").write_text("print('hi')\n")
    with pytest.raises(SpecError, match=r"program 'pyhton' is neither a program on PATH nor a file .*'python'\?"):
        parse_spec({"name": "typo", "command": "pyhton train.py"}, base_dir=tmp_path)
    with pytest.raises(SpecError, match=r"program './train.sh' is neither an executable file"):
        parse_spec({"name": "typo", "command": "./train.sh"}, base_dir=tmp_path)
    (tmp_path / "spec.yaml").write_text("name: typo\ncommand: pyhton train.py\n")
    assert main(["plan", str(tmp_path / "spec.yaml")]) == 2
    assert "did you mean 'python'?" in capsys.readouterr().err
    parse_spec({"name": "ok", "command": "echo {batch_size}", "axes": {"batch_size": [1]}}, base_dir=tmp_path)
    parse_spec({"name": "ok", "command": "{prog} x", "axes": {"prog": ["echo"]}}, base_dir=tmp_path)  # per trial


def test_interpreters_none_runs_trials_without_a_backend(tmp_path):
    python = tmp_path / "env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    os.symlink(os.path.realpath(sys.executable), python)
    (tmp_path / "t.py").write_text("print('ok')\n")
    (tmp_path / "spec.yaml").write_text("name: nobk\ncommand: python t.py\ninterpreters: {none: env/bin/python}\n")
    assert main(["run", str(tmp_path / "spec.yaml"), "--results", str(tmp_path / "r"), "--runner", "local"]) == 0
    (row,) = ResultStore(str(tmp_path / "r")).latest().to_pylist()
    assert row["status"] == "ok" and row["command"].startswith(str(python)), row["command"]


def test_readme_points_to_the_projects_own_offline_bundle():
    readme = (REPO / "README.md").read_text()
    assert "scripts/offline-bundle.sh" in readme and (REPO / "scripts" / "offline-bundle.sh").is_file()
    assert "../shared" not in readme


def test_rows_of_an_earlier_script_are_shown_apart_not_counted(tmp_path, capsys):
    (tmp_path / "t.py").write_text("raise SystemExit('bad config')\n")
    (tmp_path / "grid.yaml").write_text("name: v\ncommand: python t.py {batch_size}\naxes: {batch_size: [1, 2]}\n")
    argv = ["run", str(tmp_path / "grid.yaml"), "--results", str(tmp_path / "r"), "--runner", "local", "--plain"]
    assert main(argv) == 0
    (tmp_path / "t.py").write_text("print('fixed')\n")  # an edited script: new trial ids
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["status", str(tmp_path / "r")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "│ v │ 2 │ 2 │" in out  # this version's 2 trials, 2 ok
    assert "sweep v: 2 trial(s) of earlier versions (2 error; ran command python t.py {batch_size}" in out
    assert "bad config" not in out  # not listed as this sweep's failures
    assert main(["report", str(tmp_path / "r"), "--no-html"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 trials, ok x2" in out and "2 trial(s) of earlier versions" in out
