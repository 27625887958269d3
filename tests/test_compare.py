"""`grid compare` on real sleep sweeps: a real 20% slowdown is caught, a change inside the repeats'
spread is not, a trial that stops being ok is a regression, a config the current run lacks fails it
(exit 3), two runs with no config in common are refused, and bad input exits 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from trials import history

from grid.cli import main
from grid.errors import UsageError
from grid.reports.compare import judge, parse_threshold
from grid.reports.table import Spread
from grid.reports.verdicts import Side

SPEC = {
    "name": "cmp",
    "workload": "sleep",
    "params": {"seconds": 0.2},
    "timeout_s": 30,
    "repeats": 3,
    "axes": {"backend": ["none", "jax"]},
}
METRIC = ["--metric", "first_epoch_s"]
LOOSE = [*METRIC, "--threshold", "60%"]  # one baseline run of 0.2 s sleeps: a band under 60% whatever the jitter


def run_sweep(tmp: Path, results: Path, *args: str) -> None:
    path = tmp / f"spec-{len(list(tmp.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    argv = ["run", str(path), "--results", str(results), "--runner", "local", "--plain", "--cpu-slots", "2"]
    argv.append("--no-merge")  # one file per row: the tests rewrite or drop rows by their files
    assert main(argv + list(args)) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The baseline (sleep 0.2 s x 3 repeats per backend) and a run 20% slower (0.24 s)."""
    tmp = tmp_path_factory.mktemp("compare")
    run_sweep(tmp, tmp / "base")
    run_sweep(tmp, tmp / "slow", "--set", "seconds=0.24")
    return {"base": tmp / "base", "slow": tmp / "slow", "tmp": tmp}


def compare(capsys, base: Path, cur: Path, *args: str, json_path: Path | None = None) -> tuple[int, dict | None, str]:
    argv = ["compare", str(base), str(cur), *args] + (["--json", str(json_path)] if json_path else [])
    code = main(argv)
    out = capsys.readouterr()
    return code, json.loads(json_path.read_text()) if json_path else None, " ".join((out.out + out.err).split())


def by_backend(verdict: dict) -> dict[str, dict]:
    return {c["config"]["backend"]: c for c in verdict["configs"]}


@pytest.mark.slow
def test_real_slowdown_is_a_regression(runs, capsys, tmp_path):
    """Against a history of 3 runs (the same run thrice: no spread between runs) a 20% slowdown is a
    regression; against that one run alone it is `noisy`: how far runs of unchanged code differ is
    unknown, and a run's repeats share its conditions (a 2-core box with two speeds moved unchanged
    code +15% from one night to the next, and its re-run as far)."""
    three = history(tmp_path / "history", runs["base"], "cmp")
    code, verdict, out = compare(
        capsys, three, runs["slow"], *METRIC, "--ignore", "seconds", json_path=tmp_path / "v.json"
    )
    assert code == 1 and verdict["verdict"] == "regression"
    assert verdict["counts"] == {"regression": 2, "noisy": 0, "improvement": 0, "unchanged": 0, "missing": 0, "new": 0}
    for config in verdict["configs"]:
        assert 10 < config["change_pct"] < 40  # 20% slower sleeps, measured on a busy machine
        assert config["baseline"]["stats"]["n"] == 3  # three baseline runs: three run medians
        assert config["reason"].startswith("worse beyond 5% and the noise band")
        assert config["noise"]["runs"] == 3 and config["noise"]["between_pct"] == 0
    assert "-> REGRESSION" in out
    code, verdict, out = compare(
        capsys, runs["base"], runs["slow"], *METRIC, "--ignore", "seconds", json_path=tmp_path / "v.json"
    )
    assert code == 6 and verdict["counts"]["noisy"] == 2
    for config in verdict["configs"]:
        assert config["noise"]["runs"] == 1 and config["noise"]["between_pct"] is None
        assert "how far runs of unchanged code differ is unknown with 1 baseline run (it takes 3)" in config["reason"]
    assert "1 baseline run: the spread between runs is unknown" in out


@pytest.mark.slow
def test_speedup_is_an_improvement_and_the_same_data_is_unchanged(runs, capsys, tmp_path):
    three = history(tmp_path / "history", runs["slow"], "cmp")
    code, verdict, _ = compare(
        capsys, three, runs["base"], *METRIC, "--ignore", "seconds", json_path=tmp_path / "v.json"
    )
    assert code == 0 and verdict["counts"]["improvement"] == 2
    code, verdict, _ = compare(capsys, runs["base"], runs["base"], *LOOSE, json_path=tmp_path / "v.json")
    assert code == 0 and verdict["counts"]["unchanged"] == 2 and verdict["verdict"] == "ok"


def scale_metric(results: Path, factors: dict[str, list[float]], metric: str = "first_epoch_s") -> None:
    """Rewrite a copy of real sweep output: each repeat's metric times its factor, per backend."""
    for path in results.glob("sweep=*/*.parquet"):
        table = pq.read_table(path)
        row = table.to_pylist()[0]
        row[metric] *= factors[row["backend"]][row["repeat"]]
        pq.write_table(pa.Table.from_pylist([row], schema=table.schema), path)


@pytest.mark.slow
def test_repeats_that_spread_wider_than_the_threshold_are_noisy(runs, capsys, tmp_path):
    """A config whose repeats spread wide in every run has a band wider than the threshold: `noisy`,
    saying what would settle it; a config with tight repeats beside it is judged as usual. A run whose
    own repeats spread wider still is noisy by its own band, and says so."""
    wide = tmp_path / "wide"
    shutil.copytree(runs["base"], wide)
    scale_metric(wide, {"none": [0.8, 1.0, 1.25], "jax": [1.0, 1.0, 1.0]})
    three = history(tmp_path / "history", wide, "cmp")
    current = tmp_path / "current"
    shutil.copytree(runs["base"], current)
    scale_metric(current, {"none": [0.8, 1.0, 1.25], "jax": [1.2, 1.2, 1.2]})
    code, verdict, _out = compare(capsys, three, current, *METRIC, json_path=tmp_path / "v.json")
    assert code == 1
    configs = by_backend(verdict)
    assert configs["jax"]["kind"] == "regression"
    assert configs["none"]["kind"] == "noisy"
    assert "is wider than the 5% threshold" in configs["none"]["reason"]
    assert "would settle it: more repeats (about" in configs["none"]["reason"]
    shutil.rmtree(current / "sweep=cmp")
    shutil.copytree(runs["base"] / "sweep=cmp", current / "sweep=cmp")
    scale_metric(current, {"none": [0.8, 1.15, 1.5], "jax": [1.0, 1.0, 1.0]})
    code, verdict, out = compare(capsys, three, current, *METRIC, json_path=tmp_path / "v.json")
    assert code == 6 and verdict["verdict"] == "noisy" and "-> NOISY" in out
    scattered = by_backend(verdict)["none"]
    assert "(the repeats of the run judged)" in scattered["reason"] and "quieter machine" in scattered["reason"]


@pytest.mark.slow
def test_trials_no_longer_ok_regress_and_missing_or_new_are_listed(runs, capsys, tmp_path):
    ooms = tmp_path / "ooms"  # the same configs (the memory budget is not part of one), now over budget
    run_sweep(tmp_path, ooms, "--set", "backend=[none]", "--set", "memory_limit_mib=4")
    code, verdict, out = compare(capsys, runs["base"], ooms, *METRIC, json_path=tmp_path / "v.json")
    assert code == 1
    configs = by_backend(verdict)
    assert configs["none"]["kind"] == "regression" and configs["none"]["reason"] == "status: ok -> oom x3"
    assert configs["jax"]["kind"] == "missing"
    assert "1 regression, 0 noisy, 0 improvements, 0 unchanged, 1 missing, 0 new -> REGRESSION" in out
    code, verdict, _ = compare(capsys, ooms, runs["base"], *METRIC, json_path=tmp_path / "v.json")
    assert code == 0
    assert by_backend(verdict)["none"]["reason"] == "status: oom x3 -> ok"
    assert by_backend(verdict)["jax"]["kind"] == "new"


@pytest.mark.slow
def test_configs_missing_from_the_current_run_fail_it_unless_allowed(runs, capsys, tmp_path):
    current = tmp_path / "current"  # the baseline's run, but its jax trials never wrote a row
    shutil.copytree(runs["base"], current)
    for path in current.glob("sweep=*/*.parquet"):
        if pq.read_table(path).column("backend")[0].as_py() == "jax":
            path.unlink()
    code, verdict, out = compare(capsys, runs["base"], current, *LOOSE, json_path=tmp_path / "v.json")
    assert code == 3 and verdict["verdict"] == "incomplete"
    assert verdict["counts"]["unchanged"] == 1 and by_backend(verdict)["jax"]["kind"] == "missing"
    assert "1 missing, 0 new -> INCOMPLETE: the current run lacks configs of the baseline" in out
    code, verdict, out = compare(
        capsys, runs["base"], current, *LOOSE, "--allow-missing", json_path=tmp_path / "v.json"
    )
    assert code == 0 and verdict["verdict"] == "ok" and verdict["allow_missing"] is True
    assert "1 missing, 0 new -> no regression" in out
    code, verdict, _ = compare(capsys, current, runs["base"], *LOOSE, json_path=tmp_path / "v.json")
    assert code == 0 and by_backend(verdict)["jax"]["kind"] == "new"  # a config added is no failure


@pytest.mark.slow
def test_runs_with_no_config_in_common_are_refused(runs, capsys):
    # the spec changed (seconds 0.2 -> 0.24): every config is new, every baseline one missing
    code, _, out = compare(capsys, runs["base"], runs["slow"], *METRIC)
    assert code == 2 and "nothing can be compared (the spec changed?)" in out
    assert "They differ in seconds: baseline 0.2, current 0.24" in out and "--ignore seconds" in out


@pytest.mark.slow
def test_sweeps_are_picked_by_name(runs, capsys, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(runs["base"], both)
    run_sweep(tmp_path, both, "--set", "name=renamed")
    code, _, out = compare(capsys, runs["base"], both, *METRIC)
    assert code == 2 and "holds sweeps cmp, renamed: pick one with --sweep" in out
    code, verdict, _ = compare(
        capsys, runs["base"], both, *LOOSE, "--current-sweep", "renamed", json_path=tmp_path / "v.json"
    )
    assert code == 0 and verdict["current"]["sweep"] == "renamed" and verdict["counts"]["unchanged"] == 2
    code, _, out = compare(capsys, runs["base"], both, *METRIC, "--sweep", "nope")
    assert code == 2 and "baseline sweep: received 'nope', expected one of cmp" in out


@pytest.mark.slow
def test_bad_input_exits_2(runs, capsys, tmp_path):
    base = runs["base"]
    code, _, out = compare(capsys, base, base, "--metric", "speed")
    assert code == 2 and "--metric: received 'speed', expected one of:" in out and "images_per_s" in out
    code, _, out = compare(capsys, base, base)  # sleep trials measure no steady epoch
    assert code == 2 and "measured steady_epoch_s" in out
    measured = out.split("measured metrics: ")[1].split(" (choose")[0].split(", ")
    assert "first_epoch_s" in measured and "steady_epoch_s" not in measured
    code, _, out = compare(capsys, base, tmp_path / "empty", *METRIC)
    assert code == 2 and "no results there" in out
    code, _, out = compare(capsys, base, base, *METRIC, "--threshold", "lots")
    assert code == 2 and "--threshold: received 'lots'" in out
    code, _, out = compare(capsys, base, base, *METRIC, "--ignore", "colour")
    assert code == 2 and "--ignore: received colour, expected config keys:" in out


def side(values: list[float], **statuses: int) -> Side:
    stats = Spread(sorted(values)[len(values) // 2], min(values), max(values), len(values)) if values else None
    return Side(statuses or {"ok": len(values)}, stats)


def kind(runs: list[list[float]], values: list[float], threshold: float = 5, higher: bool = False, **st: int) -> str:
    return judge(runs, side(runs[-1] if runs else []), side(values, **st), values, threshold, higher).kind


QUIET = [[1.0, 1.01, 0.99], [1.02, 1.0, 1.01], [0.99, 1.0, 0.98], [1.01, 1.0, 1.02]]
LOUD = [[1.0, 1.01, 0.99], [1.2, 1.21, 1.19], [0.85, 0.86, 0.84], [1.1, 1.1, 1.1], [0.95, 0.95, 0.96]]


def test_judge_rules():
    assert kind(QUIET, [1.2, 1.21, 1.19]) == "regression"
    assert kind(QUIET, [1.2, 1.21, 1.19], higher=True) == "improvement"  # higher is better
    assert kind(QUIET, [1.03, 1.04, 1.02]) == "unchanged"
    # runs that differ by 15% (each with tight repeats): +20% does not stand out, nothing is known within 5%
    assert kind(LOUD, [1.2, 1.21, 1.19]) == "noisy" and kind(LOUD, [1.0, 1.0, 1.0]) == "noisy"
    assert kind(LOUD, [3.0, 3.0, 3.1]) == "regression"  # far beyond the band
    judged = judge(LOUD, side(LOUD[-1]), side([1.0, 1.0]), [1.0, 1.0], 5, False)
    assert judged.noise is not None and judged.noise.between_pct and judged.noise.between_pct > judged.noise.within_pct
    assert "longer steady windows" in judged.reason and "5 runs" in judged.reason
    last, cur = side([1.0]), side([1.0], ok=1, oom=2)
    assert judge([[1.0]], last, cur, [1.0], 5, False)[:2] == ("regression", "status: ok -> 1 ok, 2 oom")
    assert judge([[]], side([], oom=3), side([1.0, 1.0]), [1.0, 1.0], 5, False)[:2] == (
        "improvement",
        "status: oom x3 -> ok",
    )
    assert judge([[]], side([], oom=3), side([], oom=3), [], 5, False)[:2] == (
        "unchanged",
        "not measured in either side",
    )
    short = judge(QUIET, side([1.0]), side([1.3]), [1.3], 5, False, "steady window 0.2 s")
    assert short.kind == "noisy" and short.reason == "steady window 0.2 s"
    # fewer than 3 runs: how far runs differ is unknown, so even +50% (either way) is at most noisy
    for runs in (QUIET[:1], QUIET[:2]):
        assert kind(runs, [1.5, 1.51, 1.49]) == "noisy" and kind(runs, [0.5, 0.5, 0.51]) == "noisy"
    assert kind(QUIET[:1], [1.0, 1.0, 1.01]) == "unchanged" and kind(QUIET[:3], [1.5, 1.51, 1.49]) == "regression"


# A machine with two speeds (the 2-core CPU box, nightly-cpu2 night 3): two of three nights close
# together, the band from their spread narrow, and unchanged code's next night at the other speed.
TWO_SPEEDS = [[0.683, 0.707, 0.971], [0.682, 0.7, 0.944], [1.0, 1.058, 1.145]]


def test_a_change_that_an_accepted_run_showed_is_not_a_regression():
    """+48% beyond a band of ±19%, but one of the 3 accepted runs measured as much (1.058 against
    1.048): noisy, naming that run; beyond every run it is a regression, and the same holds for the
    other direction and for a metric where higher is better."""
    judged = judge(TWO_SPEEDS, side(TWO_SPEEDS[-1]), side([0.719, 1.048, 1.149]), [0.719, 1.048, 1.149], 5, False)
    assert judged.kind == "noisy" and judged.change is not None and judged.change > judged.noise.band_pct
    assert "an accepted run of the baseline measured 1.06, as far" in judged.reason
    assert kind(TWO_SPEEDS, [1.1, 1.2, 1.3]) == "regression"
    assert kind(TWO_SPEEDS, [0.4, 0.41, 0.42]) == "improvement"
    faster = [[1 / v for v in run] for run in TWO_SPEEDS]  # images/s: higher is better
    assert kind(faster, [1 / 0.719, 1 / 1.048, 1 / 1.149], higher=True) == "noisy"
    assert kind(faster, [0.7, 0.75, 0.8], higher=True) == "regression"


# An H100, ResNet-50 on jax (bench_nightly --quick --resnet): 4 nights of unchanged code whose run
# medians lay within 3%, then a fifth whose repeats spread 2.22-2.48 s (its machine got busier), and
# that night's re-run (--confirm 1), which spread as wide.
QUIET_NIGHTS = [[2.075, 2.25, 2.149], [2.177, 2.138, 2.143], [2.087, 2.105, 2.109], [2.214, 2.158, 2.161]]
SCATTERED, ITS_RERUN = [2.484, 2.405, 2.223], [2.482, 2.271, 2.175]


def test_a_run_whose_own_repeats_scatter_sets_its_band():
    """By the history's noise alone the band was ±1.9%: the night (+12.1%) was flagged and its re-run
    (+5.8%) confirmed it, a regression of unchanged code. The run's own repeats say its median is
    uncertain by ±11.8%: the band the flag and the confirmation are held to, and the re-run, judged
    as a night, is noisy. The same median with tight repeats is a regression on a ±1.9% band."""
    judged = judge(QUIET_NIGHTS, side(QUIET_NIGHTS[-1]), side(SCATTERED), SCATTERED, 5, False)
    noise = judged.noise
    assert noise is not None and judged.change == pytest.approx(12.1, abs=0.1)
    assert noise.own_widest and noise.history_pct == pytest.approx(0.62, abs=0.01)
    assert noise.band_pct == pytest.approx(3 * noise.own_pct) and noise.band_pct == pytest.approx(11.8, abs=0.1)
    assert "the repeats of the run judged" in judged.reason
    rerun = judge(QUIET_NIGHTS, side(QUIET_NIGHTS[-1]), side(ITS_RERUN), ITS_RERUN, 5, False)
    assert rerun.kind == "noisy" and rerun.change == pytest.approx(5.8, abs=0.1)
    assert "quieter machine" in rerun.reason and rerun.noise is not None and rerun.noise.band_pct > 14
    same = [2.41, 2.405, 2.40]
    tight = judge(QUIET_NIGHTS, side(QUIET_NIGHTS[-1]), side(same), same, 5, False)
    assert tight.kind == "regression" and tight.noise is not None
    assert tight.noise.band_pct == pytest.approx(1.9, abs=0.1)
    assert kind(QUIET_NIGHTS, [2.7, 2.6, 2.5]) == "regression"  # scattered, but beyond its own band too


def test_threshold_parsing():
    assert parse_threshold("5%") == 5.0 and parse_threshold("2.5") == 2.5 and parse_threshold(0) == 0.0
    for bad in ("-1%", "five", "nan"):
        with pytest.raises(UsageError, match="--threshold"):
            parse_threshold(bad)


def _comparison():
    from grid.reports.noise import Noise
    from grid.reports.verdicts import Comparison, Verdict

    noise = Noise(runs=3, center=1.0, between_pct=2.0, within_pct=1.0, repeats=2, band_pct=6.0)
    return Comparison(
        metric="steady_epoch_s",
        threshold_pct=5.0,
        baseline={"uri": "baselines/nightly", "sweep": "n"},
        current={"uri": "nightly/t/results", "sweep": "n"},
        verdicts=[
            Verdict(
                {"backend": "jax", "batch_size": 64},
                "regression",
                "+20.0% <b>beyond</b> the noise",
                Side({"ok": 2}, Spread(1.0, 0.9, 1.1, 3)),
                Side({"ok": 1, "oom": 1}, Spread(1.2, 1.2, 1.2, 1)),
                change_pct=20.0,
                noise=noise,
                runs=[[1.0, 1.0], [0.9, 1.1], [1.0, 1.0]],
                current_values=[1.2],
                confirm_values=[[1.19, 1.21]],
                confirmed=True,
                moved_at=3,
            ),
            Verdict({"backend": "torch", "batch_size": 64}, "new", "not in the baseline", None, None, float("inf")),
        ],
        runs=["20261201T000000Z", "20261202T000000Z", "20261203T000000Z"],
        notes=["a note"],
    )


def test_a_verdict_written_as_json_reads_back_the_same(tmp_path):
    from grid.reports.verdicts import read_json, write_json

    result = _comparison()
    write_json(result, str(tmp_path / "v.json"), [str(tmp_path / "h.png")])
    read = read_json(str(tmp_path / "v.json"))
    again, plots = read.result, read.plots
    assert again == result and again.to_json() == result.to_json() and plots == [str(tmp_path / "h.png")]
    assert again.exit_code == 1 and again.verdicts[1].change_pct == float("inf")


def test_the_report_shows_a_verdict_file_and_embeds_only_png_plots(tmp_path):
    """The verdict's table (each config, the run it moved at) is text; a plot path the file names is
    embedded only if it is a PNG, whatever its name says."""
    from grid.reports.history_plot import write_history_plots
    from grid.reports.verdict_page import verdict_section
    from grid.reports.verdicts import read_json, write_json

    result = _comparison()
    (png,) = write_history_plots(result, str(tmp_path / "plots"))
    secret = tmp_path / "secret.png"
    secret.write_text("password=hunter2\n")
    write_json(result, str(tmp_path / "v.json"), [png, str(secret), "/etc/passwd"])
    html = verdict_section(read_json(str(tmp_path / "v.json")))
    assert 'id="verdict"' in html and html.count("<img") == 1 and "data:image/png;base64," in html
    assert "hunter2" not in html and "2 history plot(s) named in the verdict file are not PNG files" in html
    assert "+20.0% &lt;b&gt;beyond&lt;/b&gt; the noise" in html and "<b>beyond" not in html
    assert "<td>this run</td>" in html and "1.20 [1 ok, 1 oom]" in html and "±6.0%" in html


def test_a_verdict_file_that_is_not_one_is_refused_before_the_report(tmp_path, capsys):
    (tmp_path / "bad.json").write_text('{"verdict": "ok"}')
    (tmp_path / "text.json").write_text("not json")
    for name, said in (("bad.json", "not a verdict written by grid compare --json"), ("text.json", "is not JSON"),
                       ("none.json", "cannot read")):  # fmt: skip
        code = main(["report", str(tmp_path / "no-results"), "--out", str(tmp_path / "page"),
                     "--verdict", str(tmp_path / name)])  # fmt: skip
        assert code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "page").exists()
