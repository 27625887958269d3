"""The CLI end to end on the local runner: plan, run, status."""

from __future__ import annotations

from grid.cli import main

SPEC = {
    "name": "cli",
    "workload": "sleep",
    "params": {"seconds": 0.1},
    "axes": {"batch_size": [1, 2], "fail": ["none", "error"]},
    "timeout_s": 30,
}


def test_plan_lists_trials_and_writes_nothing(write_spec, tmp_path, capsys):
    assert main(["plan", str(write_spec(SPEC))]) == 0
    out = capsys.readouterr().out
    assert "4 trial(s) = 4 combination(s) - 0 excluded, x 1 repeat(s)" in out
    assert out.count("  gpus=1  ") == 4
    assert not (tmp_path / "results").exists()


def test_plan_with_override(write_spec, capsys):
    assert main(["plan", str(write_spec(SPEC)), "--set", "batch_size=[1,2,3]", "--set", "repeats=2"]) == 0
    assert "12 trial(s)" in capsys.readouterr().out


def test_run_then_status(write_spec, tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", str(write_spec(SPEC)), "--results", str(results), "--runner", "local", "--plain"]) == 0
    out = capsys.readouterr().out
    assert "[grid] 4 trials, 0 already done, 4 to run on 1 workers" in out
    assert "no GPUs found: running on 1 CPU slot(s)" in out
    assert "sweep cli: 4 trial(s) run now" in out
    failure = "RuntimeError: sleep workload asked to fail (fail: error)"
    assert out.count(failure) == 2 and out.count("    log: ") == 2, out  # each failure: why, and its log
    assert main(["status", str(results)]) == 0
    out = capsys.readouterr().out
    assert "cli" in out and out.count(failure) == 2 and "_logs/" in out
    assert main(["run", str(write_spec(SPEC)), "--results", str(results), "--runner", "local", "--strict"]) == 0
    assert "nothing to run" in capsys.readouterr().out


def test_strict_exits_1_on_failed_trials(write_spec, tmp_path):
    argv = ["run", str(write_spec(SPEC)), "--results", str(tmp_path / "r"), "--runner", "local", "--plain", "--strict"]
    assert main(argv) == 1


def test_status_of_missing_results_exits_2_as_report_and_query_do(tmp_path, capsys):
    assert main(["status", str(tmp_path / "none")]) == 2
    assert "no results in" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "none"), "--no-html"]) == 2
    assert main(["query", str(tmp_path / "none"), "select 1"]) == 2


def test_bad_cpu_slots(write_spec, tmp_path, capsys):
    argv = ["run", str(write_spec(SPEC)), "--results", str(tmp_path / "r"), "--runner", "local", "--cpu-slots", "0"]
    assert main(argv) == 2
    assert "--cpu-slots: received 0" in capsys.readouterr().err
