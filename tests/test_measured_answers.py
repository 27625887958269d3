"""The report and the end of a run answer with what was measured: fastest by wall time and leanest by
peak RSS where no epochs and no GPU memory were measured (said so), and trials that shared a GPU are
left out of the answer with the reason."""

from __future__ import annotations

from grid.cli import main

SPEC = "name: {name}\nworkload: sleep\nparams: {{seconds: {seconds}}}\naxes:\n  batch_size: [1, 4]\ntimeout_s: 30\n"


def test_no_epochs_answers_by_wall_time_and_peak_rss(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(SPEC.format(name="plain", seconds=0.1))
    assert (
        main(["run", str(tmp_path / "s.yaml"), "--results", str(tmp_path / "r"), "--runner", "local", "--plain"]) == 0
    )
    run = " ".join(capsys.readouterr().out.split())
    assert "fastest, by wall time (no steady epoch measured): batch_size=" in run
    assert "leanest that ran, by peak RSS (no GPU memory measured): batch_size=" in run
    assert main(["report", str(tmp_path / "r"), "--no-html"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "fastest, by wall time (no steady epoch measured) │ batch_size=" in out and " s, peak RSS " in out
    assert "leanest that ran, by peak RSS (no GPU memory measured)" in out
    assert "wall s" in out and "peak RSS MiB" in out and "epoch s" not in out.split("median (min-max)")[1]


def test_trials_that_shared_a_gpu_are_left_out_with_the_reason(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(SPEC.format(name="packed", seconds=1.0) + "exclusive: false\n")
    argv = ["run", str(tmp_path / "s.yaml"), "--results", str(tmp_path / "r"), "--runner", "local", "--num-gpus", "1"]
    assert main([*argv, "--plain"]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "r"), "--no-html"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "2 trial(s) left out because they shared a GPU, so their timings are not a GPU's own: 2 packed with "
        "trials of their own sweep (exclusive: false in the spec" in out
    ), out
