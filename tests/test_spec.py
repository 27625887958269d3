"""Spec validation: every problem named with field, value received and what is expected; exit 2; nothing written."""

from __future__ import annotations

import pytest

from grid.cli import main
from grid.errors import SpecError
from grid.spec.overrides import apply_overrides
from grid.spec.parse import parse_spec

BASE = {
    "name": "t",
    "workload": "sleep",
    "axes": {"backend": ["none"], "memory_fraction": [None, 0.5], "batch_size": [32], "gpus": [1]},
}


def _spec(**changes):
    data = {**BASE, **changes}
    return {k: v for k, v in data.items() if v is not ...}


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"axes": {"memory_fraction": [0.5, 1.5]}},
            "axes.memory_fraction[1]: received 1.5, expected 0 < f <= 1 or null",
        ),
        ({"axes": {"memory_fraction": [0]}}, "axes.memory_fraction[0]: received 0, expected 0 < f <= 1 or null"),
        ({"axes": {"batch_size": [0]}}, "axes.batch_size[0]: received 0, expected an integer >= 1"),
        ({"axes": {"batch_size": ["32"]}}, 'axes.batch_size[0]: received "32", expected an integer >= 1'),
        ({"axes": {"gpus": [1.5]}}, "axes.gpus[0]: received 1.5, expected an integer >= 1"),
        ({"axes": {"backend": ["caffe"]}}, 'axes.backend[0]: received "caffe", expected one of'),
        (
            {"axes": {"epochz": [1]}},
            "axes.epochz: unknown parameter \"epochz\" for workload 'sleep'; valid parameters are",
        ),
        ({"axes": {"batch_size": [32, 32]}}, "axes.batch_size: repeated value(s) 32"),
        ({"axes": {"batch_size": []}}, "axes.batch_size: received [], expected a non-empty list of values"),
        ({"params": {"seconds": -1}}, "params.seconds: received -1, expected a number >= 0"),
        (
            {"params": {"seconds": [1, 2]}},
            "params.seconds: received [1, 2], expected one value (put lists of values under axes)",
        ),
        ({"params": {"batch_size": 8}}, "batch_size: set both in params and in axes; keep one"),
        ({"repeats": 0}, "repeats: received 0, expected an integer >= 1"),
        ({"timeout_s": "soon"}, 'timeout_s: received "soon", expected a number of seconds > 0'),
        ({"exclusive": "yes"}, 'exclusive: received "yes", expected true or false'),
        ({"name": "a/b"}, 'name: received "a/b", expected a name of letters'),
        ({"workload": "nope"}, 'workload: received "nope", expected one of'),
        ({"exclude": [{"batch_size": 7, "colour": "red"}]}, 'exclude[0].colour: unknown parameter "colour"'),
        ({"exclude": "torch"}, 'exclude: received "torch", expected a list of rules'),
        (
            {"interpreters": {"caffe": "/x"}},
            'interpreters.caffe: received "caffe", expected a backend of this workload',
        ),
        ({"colour": "red"}, "unknown key(s) ['colour']; valid keys are ['axes', 'command', 'description'"),
    ],
)
def test_each_problem_names_field_value_and_expectation(changes, message):
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(**changes))
    assert message in str(info.value)


def test_all_problems_reported_at_once():
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(repeats=0, timeout_s=-1, axes={"memory_fraction": [2.0], "batch_size": [0]}))
    assert len(info.value.problems) == 4


def test_not_a_mapping():
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_spec(["name", "t"])


def test_valid_spec_defaults():
    spec = parse_spec(_spec(timeout_s=5))
    assert spec.timeout_s == 5.0 and spec.repeats == 1 and spec.exclusive is True and spec.retries == 2
    assert spec.axes["memory_fraction"] == [None, 0.5]


def test_int_accepted_where_float_expected():
    spec = parse_spec(_spec(axes={"memory_fraction": [1]}))
    assert spec.axes["memory_fraction"] == [1.0]


def test_overrides_set_axes_params_and_settings():
    data = apply_overrides(BASE, ["batch_size=[32,64]", "seconds=0.25", "repeats=3", "memory_fraction=null"])
    spec = parse_spec(data)
    assert spec.axes["batch_size"] == [32, 64]
    assert spec.params["seconds"] == 0.25
    assert spec.repeats == 3
    assert spec.axes["memory_fraction"] == [None]


def test_override_unknown_key():
    with pytest.raises(SpecError, match="unknown key 'colour'"):
        apply_overrides(BASE, ["colour=red"])


def test_override_without_equals():
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        apply_overrides(BASE, ["batch_size"])


@pytest.mark.parametrize("command", ["plan", "run"])
def test_cli_exit_2_and_nothing_written(command, write_spec, tmp_path, capsys):
    path = write_spec(_spec(axes={"memory_fraction": [1.5]}))
    results = tmp_path / "results"
    argv = [command, str(path)] + (["--results", str(results), "--runner", "local"] if command == "run" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "memory_fraction[0]: received 1.5, expected 0 < f <= 1 or null" in err
    assert "Traceback" not in err
    assert not results.exists()


def test_cli_bad_override_exit_2(write_spec, tmp_path, capsys):
    path = write_spec(_spec())
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "--set", "memory_fraction=[1.5]"]) == 2
    assert "received 1.5" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_missing_file(tmp_path, capsys):
    assert main(["plan", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_cli_bad_yaml(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    assert main(["plan", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_a_key_written_twice_is_a_spec_error_not_the_last_one_silently(tmp_path, capsys):
    path = tmp_path / "twice.yaml"
    path.write_text("name: t\nworkload: sleep\naxes:\n  batch_size: [1]\n  batch_size: [2, 3]\n")
    assert main(["plan", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "duplicate key 'batch_size' (first on line 4): YAML would keep only the last" in err
    merged = tmp_path / "merged.yaml"
    merged.write_text("name: t\nworkload: sleep\nparams:\n  <<: {seconds: 1}\n  seconds: 2\n")
    assert main(["plan", str(merged)]) == 0


def test_non_numeric_values_for_numeric_params_are_spec_errors_on_every_path(write_spec, tmp_path, capsys):
    path = write_spec(_spec(axes={"memory_fraction": ["abc"]}))
    assert main(["plan", str(path)]) == 2
    assert 'axes.memory_fraction[0]: received "abc", expected 0 < f <= 1 or null' in capsys.readouterr().err
    assert main(["plan", str(write_spec(_spec())), "--set", "memory_fraction=[abc]"]) == 2
    assert 'received "abc", expected 0 < f <= 1 or null' in capsys.readouterr().err
