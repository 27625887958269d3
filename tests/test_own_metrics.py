"""A trial's own metrics are columns like any other: queried, pivoted in reports and compared,
each in its own direction (declared in the spec, known from its name, or given with --goal)."""

from __future__ import annotations

import json

import pytest
import yaml
from trials import history

from grid.cli import main

TRAIN = """
import os

def train(config):
    shift = float(os.environ.get("SHIFT", "0"))
    return {"test_acc": 0.9 + shift, "widgets": 3.0 + shift, "gadgets": 5.0 + shift, "kind": "demo"}
"""


@pytest.fixture
def runs(tmp_path):
    """The same two trials run twice: the second run's values are 0.5 lower."""
    (tmp_path / "mytrain.py").write_text(TRAIN)
    for name, shift in (("base", "0"), ("cur", "-0.5")):
        spec = {
            "name": "own",
            "function": "mytrain:train",
            "axes": {"lr": [0.1, 0.2]},
            "env": {"SHIFT": shift},
            "metrics": {"widgets": {"goal": "max"}},
        }
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(spec))
        assert (
            main(
                [
                    "run",
                    str(tmp_path / f"{name}.yaml"),
                    "--results",
                    str(tmp_path / name),
                    "--runner",
                    "local",
                    "--plain",
                ]
            )
            == 0
        )
    return tmp_path


def test_query_and_report_see_the_trials_own_columns(runs, capsys):
    capsys.readouterr()
    assert (
        main(
            [
                "query",
                str(runs / "base"),
                "select lr, test_acc, widgets, kind, metric_goals_json from trials order by lr",
                "--csv",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("0.1,0.9,3,demo,") and json.loads(
        lines[1].split(",", 4)[4].strip('"').replace('""', '"')
    ) == {"widgets": "max", "test_acc": "max", "gadgets": None, "kind": None}
    assert main(["report", str(runs / "base"), "--no-html", "--rows", "lr", "--metric", "widgets"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "sweep own: widgets, median (min-max)" in out and "test_acc" in out  # pivot, and the default table's column


def test_compare_takes_each_metrics_direction(runs, capsys):
    base, cur = str(history(runs / "history", runs / "base", "own")), str(runs / "cur")
    assert main(["compare", base, cur, "--metric", "test_acc"]) == 1  # known from its name: higher is better
    assert "test_acc (higher is better)" in capsys.readouterr().out
    assert main(["compare", base, cur, "--metric", "widgets"]) == 1  # declared in the spec: goal max
    capsys.readouterr()
    assert main(["compare", base, cur, "--metric", "gadgets"]) == 2
    assert "cannot tell whether higher or lower is better" in capsys.readouterr().err
    assert main(["compare", base, cur, "--metric", "gadgets", "--goal", "min"]) == 0
    assert "2 improvements" in capsys.readouterr().out
