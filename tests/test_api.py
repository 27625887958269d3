"""The Python API (grid.run / grid.load / grid.load_pandas) over the same engine as the CLI."""

from __future__ import annotations

import pytest

import grid
from grid.errors import SpecError

TRAIN = "def train(config):\n    return {'score': config['lr'] * 10}\n"


def test_run_a_spec_mapping_with_overrides_and_load_the_results(tmp_path, monkeypatch):
    (tmp_path / "mytrain.py").write_text(TRAIN)
    monkeypatch.chdir(tmp_path)  # a mapping's workdir is the current directory
    spec = {"name": "nb", "function": "mytrain:train", "axes": {"lr": [0.1]}}
    results = str(tmp_path / "results")
    table = grid.run(spec, results=results, overrides={"lr": [0.1, 0.2]}, runner="local", quiet=True)
    assert sorted(table.column("score").to_pylist()) == [1.0, 2.0]
    assert grid.load(results).num_rows == 2 and grid.load(results, attempts=True).num_rows == 2
    frame = grid.load_pandas(results, sweep="nb")
    assert list(frame.sort_values("lr")["score"]) == [1.0, 2.0] and set(frame["status"]) == {"ok"}
    again = grid.run(spec, results=results, overrides=["lr=[0.1,0.2]"], runner="local", quiet=True)
    assert again.num_rows == 2  # resumed: nothing ran twice
    assert grid.load(results, attempts=True).num_rows == 2


def test_run_a_spec_file(tmp_path):
    (tmp_path / "grid.yaml").write_text("name: f\nworkload: sleep\nparams: {seconds: 0.05}\n")
    table = grid.run(tmp_path / "grid.yaml", results=str(tmp_path / "r"), runner="local", quiet=True)
    assert table.column("status").to_pylist() == ["ok"]


def test_bad_specs_raise_before_anything_runs(tmp_path):
    with pytest.raises(SpecError, match="placeholder {x} names no axis or param"):
        grid.run({"name": "b", "command": "echo {x}"}, results=str(tmp_path / "r"), runner="local", quiet=True)
    assert not (tmp_path / "r").exists()


def test_run_options_are_declared_once_for_the_cli_and_the_api(tmp_path):
    """grid run's flags and grid.run's keywords come from one declaration (grid/options.py)."""
    import dataclasses

    from grid.cli import build_parser
    from grid.errors import UsageError
    from grid.options import RunOptions

    spec = {"name": "o", "workload": "sleep", "params": {"seconds": 0.01}}
    with pytest.raises(UsageError, match=r"unknown run option\(s\) \['num_gpu'\]; valid options are \['results'"):
        grid.run(spec, results=str(tmp_path / "r"), runner="local", quiet=True, num_gpu=1)
    assert not (tmp_path / "r").exists()
    flags = [f.metadata["flag"] for f in dataclasses.fields(RunOptions) if f.metadata.get("flag")]
    run_help = build_parser()._subparsers._group_actions[0].choices["run"].format_help()  # type: ignore[union-attr]
    assert flags and all(flag in run_help for flag in flags)
    table = grid.run(
        spec,
        results=str(tmp_path / "r"),
        runner="local",
        quiet=True,
        store_retry_s=5.0,
        lease_ttl_s=5.0,
        state_dir=str(tmp_path / "state"),
        merge=False,
    )
    assert table.column("status").to_pylist() == ["ok"]
    assert len(list((tmp_path / "r" / "sweep=o").glob("*.parquet"))) == 1
