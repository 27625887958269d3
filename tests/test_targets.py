"""Specs of the user's own target (`command:` / `function:`): every mistake is a spec error before
anything runs, and a trial's identity follows the script it runs."""

from __future__ import annotations

import json

import pytest
import yaml

from grid.cli import main
from grid.errors import SpecError
from grid.spec.expand import expand
from grid.spec.overrides import apply_overrides
from grid.spec.parse import load_spec, parse_spec
from grid.spec.target import render, split_command

SCRIPT = "import sys\nprint('args', sys.argv[1:])\n"


@pytest.fixture
def project(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    return tmp_path


def spec(project, **data):
    base = {"name": "mine", "command": "python train.py --bs {batch_size}", "axes": {"batch_size": [8, 16]}}
    return parse_spec({**base, **data}, base_dir=project)


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"command": "python train.py --bs {batchsize}"},
            "command: placeholder {batchsize} names no axis or param; known names: batch_size, trial_id, attempt, "
            "repeat",
        ),
        ({"command": "python train.py {0}"}, "placeholder {0} in '{0}' is not a plain name"),
        ({"command": "python train.py {bs"}, "has a malformed placeholder"),
        ({"command": "python 'train.py"}, "does not split into words"),
        ({"command": {"run": "x"}}, 'command: received {"run": "x"}, expected a string or a list of strings'),
        ({"command": ""}, "command: received an empty command"),
        ({"workload": "sleep"}, "give exactly one of workload (a built-in), command (your script) or function"),
        ({"metrics": ["acc"]}, 'metrics: received ["acc"], expected a mapping of metric name'),
        ({"metrics": {"acc": "acc: ([0-9.]+"}}, "metrics.acc: the pattern 'acc: ([0-9.]+' does not compile"),
        (
            {"metrics": {"acc": {"pattern": "acc (\\d+)", "goal": "up"}}},
            'metrics.acc.goal: received "up", expected max or min',
        ),
        ({"metrics": {"acc": {"pattern": "(a) (b)"}}}, "has 2 groups; keep one group around the value"),
        ({"metrics": {"acc": {"regex": "a", "goal": "max"}}}, "unknown key(s) ['regex']"),
        ({"metrics": {"acc": {}}}, "expected a regular expression, {pattern: ..., goal: max|min} or {goal: max|min}"),
        (
            {"axes": {"memory_fraction": [0.5, 1.5]}, "command": "python train.py"},
            "axes.memory_fraction[1]: received 1.5, expected 0 < f <= 1 or null",
        ),
        (
            {"axes": {"memory_fraction": ["abc"]}, "command": "python train.py"},
            'axes.memory_fraction[0]: received "abc", expected 0 < f <= 1 or null',
        ),
        (
            {"axes": {"backend": ["caffe"]}, "command": "python train.py"},
            'axes.backend[0]: received "caffe", expected one of',
        ),
        (
            {"axes": {"lr": [0.1, "fast"]}, "command": "python train.py"},
            "axes.lr: expected one type for every value (received float, str)",
        ),
        ({"axes": {"layers": [[64, 64]]}, "command": "python train.py"}, "axes.layers: expected a string, number"),
        (
            {"params": {"batch-size": 8}, "command": "python train.py"},
            'params.batch-size: received "batch-size", expected a name',
        ),
        ({"params": {"trial_id": "x"}, "command": "python train.py"}, "'trial_id' is reserved"),
        ({"params": {"status": "x"}, "command": "python train.py"}, "'status' is the name of a results column"),
        ({"command": "python trian.py"}, "command: script 'trian.py' not found (looked in "),
        ({"command": "python trian.py"}, "did you mean 'train.py'?"),
        ({"command": "python3 -u -X importtime trian.py --bs {batch_size}"}, "did you mean 'train.py'?"),
        ({"command": "python -Wignore src/train.py"}, "script 'src/train.py' not found"),
        ({"command": "python zzz.py"}, "Python files there: train.py"),
        ({"workdir": "nowhere"}, 'workdir: received "nowhere", expected an existing directory'),
        ({"interpreters": {"caffe": "/x"}}, 'interpreters.caffe: received "caffe", expected a backend'),
    ],
)
def test_mistakes_are_spec_errors(project, changes, message):
    with pytest.raises(SpecError) as info:
        spec(project, **changes)
    assert message in str(info.value)


def test_an_unknown_placeholder_exits_2_and_writes_nothing(project, capsys):
    path = project / "grid.yaml"
    path.write_text(
        yaml.safe_dump({"name": "mine", "command": "python train.py --bs {batchsize}", "axes": {"batch_size": [8]}})
    )
    assert main(["run", str(path), "--results", str(project / "results"), "--runner", "local"]) == 2
    assert "placeholder {batchsize} names no axis or param" in capsys.readouterr().err
    assert not (project / "results").exists()


def test_empty_spec_file_says_so(tmp_path):
    (tmp_path / "grid.yaml").write_text("# nothing yet\n")
    with pytest.raises(SpecError, match="the spec is empty"):
        load_spec(tmp_path / "grid.yaml")


def test_params_are_typed_by_their_values_and_core_ones_checked(project):
    s = spec(
        project,
        params={"epochs": 3, "tag": "a"},
        axes={"batch_size": [8], "lr": [0.1, 1], "amp": [True, False], "memory_fraction": [None, 0.5]},
    )
    kinds = s.param_kinds()
    assert kinds["lr"] is float and kinds["amp"] is bool and kinds["tag"] is str and kinds["epochs"] is int
    assert s.axes["lr"] == [0.1, 1.0] and s.workload == "command" and "backend" not in kinds


def test_workdir_defaults_to_the_spec_folder_and_may_be_relative(project, tmp_path_factory):
    (project / "grid.yaml").write_text(yaml.safe_dump({"name": "m", "command": "python train.py"}))
    assert load_spec(project / "grid.yaml").workdir == str(project)
    (project / "sub").mkdir()
    (project / "sub" / "train.py").write_text(SCRIPT)
    assert spec(project, workdir="sub").workdir == str(project / "sub")


def test_editing_the_script_makes_new_trials(project):
    before = [t.trial_id for t in expand(spec(project)).trials]
    assert [t.trial_id for t in expand(spec(project)).trials] == before
    (project / "train.py").write_text(SCRIPT + "# changed\n")
    after = spec(project)
    assert not set(before) & {t.trial_id for t in expand(after).trials}
    assert after.script.paths == ("train.py",) and len(after.script.sha256) == 64


def test_module_commands_are_hashed_and_commands_without_files_say_so(project):
    (project / "pkg").mkdir()
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "run.py").write_text("print(1)\n")
    assert spec(project, command="python -m pkg.run").script.paths == ("pkg/run.py",)
    bare = spec(project, command="echo {batch_size}")
    assert bare.script.sha256 is None and "no script file found" in bare.script.note()


def test_overrides_reach_params_axes_and_core_params(project):
    data = {"name": "m", "command": "python train.py", "params": {"epochs": 2}, "axes": {"lr": [0.1]}}
    s = parse_spec(
        apply_overrides(data, ["epochs=5", "lr=[0.1,0.2]", "memory_fraction=[0.5]", "metrics.acc=a(1)"]),
        base_dir=project,
    )
    assert s.params["epochs"] == 5 and s.axes["lr"] == [0.1, 0.2] and s.axes["memory_fraction"] == [0.5]
    assert s.metrics["acc"].pattern.pattern == "a(1)"
    with pytest.raises(SpecError, match="unknown key 'colour'"):
        apply_overrides(data, ["colour=red"])
    with pytest.raises(SpecError, match='axes.memory_fraction\\[0\\]: received "abc"'):
        parse_spec(apply_overrides(data, ["memory_fraction=[abc]"]), base_dir=project)


def test_placeholders_render_like_the_spec_writes_values():
    tokens = split_command("python t.py --lr {lr} --amp {amp} --mem {memory_fraction} --lr2 {lr:.0e} {{x}}", [])
    out = render(tokens, {"lr": 0.001, "amp": True, "memory_fraction": None})
    assert out[2:] == ["--lr", "0.001", "--amp", "true", "--mem", "null", "--lr2", "1e-03", "{x}"]


def test_plan_shows_the_command_the_script_and_the_metrics(project, capsys):
    path = project / "grid.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "mine",
                "command": "python train.py --bs {batch_size}",
                "axes": {"batch_size": [8, 16]},
                "metrics": {"acc": {"pattern": "acc ([0-9.]+)", "goal": "max"}},
            }
        )
    )
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "command python train.py --bs {batch_size}, 2 trial(s)" in out
    assert f"runs in {project}; script: train.py (sha256 " in out
    assert "metrics: acc /acc ([0-9.]+)/ (max)" in out
    assert json.dumps(8) in out


@pytest.mark.parametrize(
    "command",
    [
        "python -m pkg_installed_elsewhere",
        "python -um pkg_installed_elsewhere",
        "python -c 'print(1)'",
        "python {entry} --bs {batch_size}",
        "python -X importtime train.py",
        "python -W ignore train.py",
        "python --check-hash-based-pycs never train.py",
        "python app",
        "bash run.sh",
    ],
)
def test_commands_whose_script_cannot_be_told_or_exists_are_not_refused(project, command):
    (project / "app").mkdir()
    (project / "app" / "__main__.py").write_text("print(1)\n")
    assert spec(project, command=command, params={"entry": "train.py"}).workload == "command"
