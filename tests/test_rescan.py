"""`grid rescan`: a `metrics:` pattern added after a run is applied to the stored logs of the rows
already there, as new attempts; every earlier row stays readable."""

from __future__ import annotations

from grid.cli import main
from grid.results.store import ResultStore

SCRIPT = "import os\nprint('val_acc:', 0.5 + int(os.environ['GRID_BATCH_SIZE']) / 100)\nprint('loss=0.25')\n"
SPEC = "name: acc\ncommand: python train.py\naxes:\n  batch_size: [1, 2]\n"
PATTERNS = "metrics:\n  val_acc: {pattern: 'val_acc: ([0-9.]+)', goal: max}\n"


def test_a_pattern_added_after_the_run_becomes_new_attempts(tmp_path, capsys):
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "grid.yaml").write_text(SPEC)
    results = str(tmp_path / "r")
    assert main(["run", str(tmp_path / "grid.yaml"), "--results", results, "--runner", "local", "--plain"]) == 0
    (tmp_path / "grid.yaml").write_text(SPEC + PATTERNS)
    assert main(["run", str(tmp_path / "grid.yaml"), "--results", results, "--runner", "local"]) == 0
    assert "nothing to run" in capsys.readouterr().out  # the pattern changes no trial id
    assert main(["rescan", results, str(tmp_path / "grid.yaml")]) == 0
    assert "2 trial(s) given a new attempt with the values found, 0 unchanged" in capsys.readouterr().out
    store = ResultStore(results)
    latest = {r["batch_size"]: r for r in store.latest("acc").to_pylist()}
    assert {b: r["val_acc"] for b, r in latest.items()} == {1: 0.51, 2: 0.52}
    assert all(r["attempt"] == 1 and any("rescan" in n for n in r["notes"]) for r in latest.values())
    every = store.read("acc").to_pylist()
    assert sorted(r["attempt"] for r in every) == [0, 0, 1, 1]  # the first rows are still there
    assert main(["rescan", results, str(tmp_path / "grid.yaml")]) == 0
    assert "0 trial(s) given a new attempt with the values found, 2 unchanged" in capsys.readouterr().out
    assert main(["query", results, "select batch_size, val_acc from trials order by 1", "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["1,0.51", "2,0.52"]
