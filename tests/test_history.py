"""A verdict that knows its noise: the statistics of the rule (spread of run medians, the repeats as a
second source, the change point, the steady window's thresholds), a history of accepted runs on a
local folder and on S3 (the newest N kept), and `--confirm` re-running just the flagged configs of
real sleep sweeps: a fluke is `noisy` (exit 6), a real slowdown a confirmed regression (exit 1)."""

from __future__ import annotations

import itertools
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3server
import yaml

from grid.cli import main
from grid.errors import UsageError
from grid.reports.history_plot import plot_name
from grid.reports.noise import change_point, mad_sd, noise_of
from grid.reports.repeats import repeats_text
from grid.rerun import narrowed
from grid.results.history import accept, child_uri, history_runs
from grid.results.store import ResultStore
from grid.results.window import is_short, window_of
from grid.spec.expand import expand
from grid.spec.parse import load_spec

SPEC = {
    "name": "hist",
    "workload": "sleep",
    "params": {"seconds": 0.2},
    "timeout_s": 30,
    "repeats": 2,
    "axes": {"backend": ["none", "jax"]},
}
LOCAL = ["--runner", "local", "--plain", "--cpu-slots", "2"]


def test_noise_is_the_spread_between_runs_and_the_repeats_a_second_source():
    assert mad_sd([1, 2, 3, 4, 100]) == pytest.approx(1.4826) and mad_sd([5.0]) == 0.0
    runs = [[1.0, 1.0], [1.1, 1.1], [0.9, 0.9]]  # tight repeats, runs 10% apart
    noise = noise_of(runs, [1.0, 1.0])
    assert noise is not None and noise.runs == 3 and noise.center == pytest.approx(1.0)
    assert noise.between_pct == pytest.approx(14.826) and noise.within_pct == 0
    assert noise.band_pct == pytest.approx(3 * 14.826) and noise.source == "3 runs"
    assert "longer steady windows" in noise.settle(5)
    single = noise_of([[1.0, 1.04, 0.96]], [1.0, 1.0, 1.0])
    assert single is not None and single.between_pct is None and single.source == "the repeats of 1 run (x2)"
    assert single.band_pct == pytest.approx(3 * 2 * single.within_pct) and "more accepted runs" in single.settle(5)
    repeats = noise_of([[1.0, 1.2, 0.8], [1.0, 1.2, 0.8], [1.0, 1.2, 0.8]], [1.0, 1.2, 0.8])
    assert repeats is not None and repeats.between_pct == 0 and "more repeats (about" in repeats.settle(5)
    assert noise_of([[], []], [1.0]) is None


def test_change_point_names_the_night_it_moved():
    assert change_point([1.0, 1.01, 0.99, 1.0, 1.3, 1.31], 5) == 4
    assert change_point([1.0, 1.0, 1.0, 1.25], 5) == 3  # the current run
    assert change_point([1.0, 1.01, 0.99, 1.0], 5) is None


def test_steady_window_thresholds():
    assert is_short(0.5, None) and is_short(2.0, 10) and not is_short(2.0, 40) and is_short(None, None) is None
    assert window_of({"epoch_times": [3.0, 0.4, 0.5]}) == (pytest.approx(0.9), None)  # older rows: derived
    assert window_of({"steady_window_s": 2.0, "steady_steps": 30, "epoch_times": [9.0, 9.0]}) == (2.0, 30)
    assert window_of({"epoch_times": [3.0]}) == (None, None)


def test_plot_names_stay_inside_the_folder():
    assert plot_name("steady_epoch_s") == "history-steady_epoch_s.png"
    assert plot_name("../../etc/x y") == "history-etc_x_y.png" and "/" not in plot_name("a/b")
    assert child_uri("s3://b/p?endpoint_override=h:1", "runs", "x") == "s3://b/p/runs/x?endpoint_override=h:1"


def test_confirm_narrows_the_spec_to_the_flagged_configs(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "axes": {"backend": ["none", "jax"], "batch_size": [1, 2, 3]}}))
    flagged = [{"backend": "jax", "batch_size": 2}, {"backend": "none", "batch_size": 1}]
    spec = load_spec(path, narrowed(str(path), ["seconds=0.1"], flagged))
    configs = {(t.config["backend"], t.config["batch_size"], t.config["seconds"]) for t in expand(spec).trials}
    assert configs == {("jax", 2, 0.1), ("none", 1, 0.1)}


def run(tmp: Path, results: Path, spec: dict, *args: str) -> Path:
    path = tmp / f"spec-{len(list(tmp.glob('spec-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path), "--results", str(results), *LOCAL, *args]) == 0
    return path


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("night")
    run(tmp, tmp / "results", {**SPEC, "params": {"seconds": 0.05}})
    return tmp / "results"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3server.serving(tmp_path_factory.mktemp("s3"), set_env=False) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_accept_keeps_the_newest_runs(where, night, tmp_path, request, monkeypatch):
    if where == "s3":
        s3 = request.getfixturevalue("s3")
        for key, value in s3.env.items():
            monkeypatch.setenv(key, value)
        uri = s3.uri("history")
    else:
        uri = str(tmp_path / "history")
    assert history_runs(uri, 10) == []
    for day in range(1, 5):
        accept(uri, str(night), "hist", keep=3, now=datetime(2026, 1, day, tzinfo=timezone.utc))
    runs = history_runs(uri, 10)
    assert [r.name[:8] for r in runs] == ["20260102", "20260103", "20260104"]  # the oldest dropped
    assert [r.name for r in history_runs(uri, 2)] == [r.name for r in runs[1:]]
    assert ResultStore(runs[-1].uri).read("hist").num_rows == 4
    with pytest.raises(UsageError, match="is one run's results, not a history"):
        accept(str(night), str(night), "hist", keep=3)
    assert [r.name for r in history_runs(str(night), 10)] == ["baseline"]  # one run's results: a history of one


def scale(results: Path, backend: str, factor: float) -> None:
    """A copy of a real run whose `backend` trials measured `factor` times their first epoch."""
    for path in results.glob("sweep=*/*.parquet"):
        table = pq.read_table(path)
        rows = table.to_pylist()
        for row in rows:
            if row["backend"] == backend:
                row["first_epoch_s"] *= factor
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def judge(capsys, history: Path, current: Path, *args: str) -> tuple[int, dict, str]:
    verdict = current.parent / f"{current.name}.json"
    code = main(["compare", str(history), str(current), "--metric", "first_epoch_s", "--json", str(verdict), *args])
    out = capsys.readouterr()
    found = json.loads(verdict.read_text()) if verdict.is_file() else {}  # none when a run starts the history
    return code, found, " ".join((out.out + out.err).split())


@pytest.mark.slow
def test_a_fluke_is_noisy_and_a_real_slowdown_is_confirmed(tmp_path, capsys):
    history = tmp_path / "history"
    for i in range(3):
        spec = run(tmp_path, tmp_path / f"night{i}", SPEC, "--no-merge")
        code, _, out = judge(capsys, history, tmp_path / f"night{i}", "--accept", "--threshold", "15%")
        # ok, or noisy where a loaded machine spread these short sleeps: either way it joins the history (below)
        assert code in (0, 6), out
    assert len(history_runs(str(history), 10)) == 3

    fluke = tmp_path / "fluke"  # the last night's rows, jax's 50% slower: never measured that way
    shutil.copytree(tmp_path / "night2", fluke)
    scale(fluke, "jax", 1.5)
    flags = ["--threshold", "15%", "--confirm", "1", "--spec", str(spec), *LOCAL[:2], *LOCAL[3:]]
    code, verdict, out = judge(capsys, history, fluke, *flags, "--out", str(tmp_path / "plots"))
    jax = next(c for c in verdict["configs"] if c["config"]["backend"] == "jax")
    assert code == 6 and jax["kind"] == "noisy" and jax["confirmed"] is False, out
    assert "not confirmed: 1 re-run(s) measured" in jax["reason"] and len(jax["confirm_values"][0]) == 2
    rerun = ResultStore(str(fluke / "_confirm-1")).read("hist").to_pylist()
    assert {r["backend"] for r in rerun} == {"jax"} and len(rerun) == 2  # just the flagged config
    assert (tmp_path / "plots" / "history-first_epoch_s.png").stat().st_size > 10_000

    slow = tmp_path / "slow"
    run(tmp_path, slow, {**SPEC, "params": {"seconds": 0.4}})
    flags += ["--set", "seconds=0.4", "--ignore", "seconds", "--out", str(tmp_path / "slow-plots")]
    code, verdict, out = judge(capsys, history, slow, *flags, "--accept")
    assert code == 1 and verdict["verdict"] == "regression", out
    assert verdict["plots"] == [str(tmp_path / "slow-plots" / "history-first_epoch_s.png")]
    # the report shows the verdict above the sweep: each config moved at this run, the plot inside the page
    assert main(["report", str(slow), "--out", str(tmp_path / "page"), "--verdict", str(tmp_path / "slow.json")]) == 0
    page = (tmp_path / "page" / "index.html").read_text()
    assert page.index('id="verdict"') < page.index('id="sweep-hist"') and page.count("<td>this run</td>") == 2
    assert '<span class="verdict-regression">regression</span>' in page and "history of first_epoch_s" in page
    assert "verdict (" in capsys.readouterr().out
    for config in verdict["configs"]:
        assert (
            config["kind"] == "regression"
            and config["confirmed"] is True
            and "confirmed by 1 re-run(s)" in config["reason"]
        )
        assert config["moved_at"] == 3  # the current run, after 3 accepted ones
    assert "not added to the history: the verdict is regression" in out
    assert len(history_runs(str(history), 10)) == 3


SHORT = """
from gridtrial import report

def train(config):
    report(epoch_times=[0.5, 0.2, 0.3])  # a first epoch, then 0.5 s of steady ones
    return {}
"""


@pytest.mark.slow
def test_a_steady_window_too_short_is_flagged_in_the_row_and_the_verdict(tmp_path, capsys):
    (tmp_path / "shorttrain.py").write_text(SHORT)
    spec = {"name": "short", "function": "shorttrain:train", "axes": {"lr": [0.1]}, "repeats": 2}
    run(tmp_path, tmp_path / "base", spec)
    row = ResultStore(str(tmp_path / "base")).read("short").to_pylist()[0]
    assert row["steady_window_s"] == pytest.approx(0.5) and row["window_short"] is True
    assert any("steady window 0.5 s" in note for note in row["notes"])
    code = main(["compare", str(tmp_path / "base"), str(tmp_path / "base"), "--json", str(tmp_path / "v.json")])
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert code == 6 and verdict["configs"][0]["kind"] == "noisy", capsys.readouterr().out
    assert verdict["configs"][0]["reason"].startswith("steady window 0.5 s: under 1 s or 20 steps")


@pytest.mark.slow
def test_repeats_run_interleaved_and_the_reports_say_how(tmp_path, capsys):
    # Two configs of one program (no backend to compile first, which would hold one config back),
    # in the order the driver handed them out (the processes' own starts race on a loaded machine).
    spec = {**SPEC, "params": {"seconds": 0.1}, "repeats": 3, "axes": {"batch_size": [8, 16]}}
    run(tmp_path, tmp_path / "two", spec, "--num-gpus", "2")
    rows = ResultStore(str(tmp_path / "two")).read("hist").to_pylist()
    order = [r["batch_size"] for r in sorted(rows, key=lambda r: r["dispatched_at"])]
    assert all(a != b for a, b in itertools.pairwise(order)), order
    text = repeats_text(rows)
    assert text is not None and "interleaved with the other configs (never back to back)" in text
    assert "of 2 devices" in text, text
    assert main(["report", str(tmp_path / "two"), "--no-html"]) == 0
    assert "repeats: up to 3 per config, interleaved" in capsys.readouterr().out


def test_bad_input_is_refused_before_anything_runs(tmp_path, capsys, night):
    base = ["compare", str(night), str(night), "--metric", "first_epoch_s"]
    assert main([*base, "--confirm", "1"]) == 2
    assert "give it with --spec" in capsys.readouterr().err
    assert main([*base, "--confirm", "1", "--spec", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main([*base, "--history", "0"]) == 2
    assert "--history: received 0" in capsys.readouterr().err
    assert main([*base, "--confirm", "-1"]) == 2
