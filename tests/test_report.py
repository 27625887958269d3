"""`grid report` on datasets produced by real sweeps (local runner): repeats reduced to median and
range, failures shown as such, pivots by any axis, latest attempts only, plots and the HTML page."""

from __future__ import annotations

import glob
import re
import shutil
import statistics
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from grid.cli import main
from grid.errors import UsageError
from grid.reports.build import ReportOptions, build_report
from grid.reports.plots import sweep_plots
from grid.reports.table import fmt_number, metric_cell
from grid.results.schema import SCHEMA_VERSION
from grid.results.store import ResultStore

pytestmark = pytest.mark.slow

MIXED = {
    "name": "mix",
    "workload": "sleep",
    "params": {"seconds": 0.05},
    "timeout_s": 30,
    "repeats": 2,
    "axes": {"backend": ["none", "jax"], "memory_fraction": [None, 0.5], "fail": ["none", "oom"]},
}
# the same sweep name, two trials that outlive their timeout
TIMEOUTS = [
    "--set",
    "backend=[torch]",
    "--set",
    "memory_fraction=[null]",
    "--set",
    "fail=[none]",
    "--set",
    "seconds=0.6",
    "--set",
    "timeout_s=0.2",
]


def run_sweep(tmp: Path, spec: dict, results: Path, *args: str) -> None:
    path = tmp / f"{spec['name']}-{len(list(tmp.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert (
        main(
            [
                "run",
                str(path),
                "--results",
                str(results),
                "--runner",
                "local",
                "--plain",
                "--cpu-slots",
                "2",
                "--no-merge",
                *args,
            ]
        )
        == 0
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """16 sleep trials (8 end oom) and 2 that time out, all in sweep `mix`."""
    tmp = tmp_path_factory.mktemp("mixed")
    results = tmp / "results"
    run_sweep(tmp, MIXED, results)
    run_sweep(tmp, MIXED, results, *TIMEOUTS)
    return results


def cells(view, header: str) -> list[str]:
    i = view.headers.index(header)
    return [row[i].text for row in view.rows]


def row_of(view, **labels) -> list:
    for row in view.rows:
        if all(row[view.headers.index(k)].text == v for k, v in labels.items()):
            return row
    raise AssertionError(f"no row {labels} in {[[c.text for c in r] for r in view.rows]}")


def test_shootout_shows_failures_as_such_and_unmeasured_as_dash(mixed):
    (report,) = build_report(ResultStore(str(mixed)), ReportOptions())
    view = report.table("shootout")
    # CPU sleep trials measure no epochs and no GPU memory: wall time and peak RSS instead of empty columns
    assert view.headers == ["backend", "memory_fraction", "fail", "seconds", "wall s", "peak RSS MiB", "status"]
    assert "also varying, added to rows: fail, seconds" in view.notes
    oom = row_of(view, backend="jax", memory_fraction="0.5", fail="oom")
    assert [c.text for c in oom[4:]] == ["oom x2"] * 3 and {c.kind for c in oom[4:]} == {"fail", "status-fail"}
    timeout = row_of(view, backend="torch")
    assert [c.text for c in timeout[4:]] == ["timeout x2"] * 3
    ok = row_of(view, backend="none", memory_fraction="null", fail="none")
    assert [c.kind for c in ok[4:6]] == ["value", "value"] and ok[6].text == "ok x2"
    assert not any(c.text in ("0", "0.0", "0.000") for row in view.rows for c in row)
    assert report.status_counts() == {"ok": 8, "oom": 8, "timeout": 2}


def test_pivot_median_and_range_match_the_raw_files(mixed):
    opts = ReportOptions(rows=["fail"], cols=["backend"], metric="first_epoch_s")
    (report,) = build_report(ResultStore(str(mixed)), opts)
    pivot = report.table("pivot")
    assert pivot.headers == ["fail", "memory_fraction", "seconds", "backend=jax", "backend=none", "backend=torch"]
    raw = [r for f in glob.glob(f"{mixed}/sweep=mix/*.parquet") for r in pq.read_table(f).to_pylist()]
    config = ("jax", 0.5, "none")
    values = sorted(r["first_epoch_s"] for r in raw if (r["backend"], r["memory_fraction"], r["fail"]) == config)
    expected = f"{fmt_number(statistics.median(values))} ({fmt_number(values[0])}-{fmt_number(values[-1])})"
    assert row_of(pivot, fail="none", memory_fraction="0.5", seconds="0.05")[3].text == expected
    assert row_of(pivot, fail="oom", memory_fraction="0.5", seconds="0.05")[3].text == "oom x2"
    # torch only ran with seconds=0.6: empty cells elsewhere, its timeout where it ran
    assert row_of(pivot, fail="none", memory_fraction="null", seconds="0.6")[5].text == "timeout x2"
    assert row_of(pivot, fail="none", memory_fraction="null", seconds="0.05")[5].text == ""


def test_only_latest_attempts_count(mixed, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(mixed, results)
    run_sweep(tmp_path, MIXED, results, *TIMEOUTS[:-2], "--set", "timeout_s=30", "--retry-failed")
    (report,) = build_report(ResultStore(str(results)), ReportOptions())
    row = row_of(report.table("shootout"), backend="torch")
    assert row[-1].text == "ok x2"
    assert report.status_counts() == {"ok": 10, "oom": 8}
    assert all(f.status == "oom" for f in report.failures())


def test_partial_failures_show_the_median_of_the_ok_repeats(mixed):
    (report,) = build_report(ResultStore(str(mixed)), ReportOptions())
    group_rows = [r for r in report.rows if r["_config"]["backend"] == "none" and r["_config"]["fail"] == "none"]
    from grid.reports.table import Group

    mixed_group = Group(("x",), [*group_rows[:1], dict(group_rows[1], status="oom")])
    cell = metric_cell(mixed_group, "first_epoch_s")
    assert cell.text == f"{fmt_number(group_rows[0]['first_epoch_s'])} +oom" and cell.kind == "value"


def test_unknown_axis_or_metric_is_a_usage_error(mixed, capsys):
    with pytest.raises(UsageError, match="--rows/--cols: received colour, expected axes of the trials' config: "):
        build_report(ResultStore(str(mixed)), ReportOptions(rows=["colour"]))
    assert main(["report", str(mixed), "--no-html", "--cols", "backend", "--metric", "speed"]) == 2
    err = capsys.readouterr().err
    assert "--metric: received 'speed', expected one of:" in err and "first_epoch_s" in err
    assert main(["report", str(mixed), "--sweep", "nope", "--no-html"]) == 2
    assert "no sweep 'nope'" in capsys.readouterr().err


def test_empty_results_are_a_data_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "no results in" in capsys.readouterr().err


def test_cli_writes_a_self_contained_page(mixed, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(mixed), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "oom x2" in printed and "timeout x2" in printed and f"report: {out}/index.html" in printed
    page = (out / "index.html").read_text()
    assert "oom x2" in page and "timeout x2" in page and "sleep workload asked to run out of memory" in page
    assert "timeout_s=0.2 reached" in page  # the timeout's log tail
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    # nothing measured a plot's metric on this CPU sweep: every plot is skipped with its reason
    assert "skipped, no ok trial measured steady_epoch_s" in page and "gpus does not vary" in page
    assert not list(out.glob("*.png"))


def derived(report, **per_row):
    """Rows of a real sweep with GPU-only metrics filled from its measured times: input for the plotter."""
    for row in report.rows:
        if row["status"] == "ok":
            for key, fn in per_row.items():
                row[key] = fn(row)
    return report


def test_plots_drawn_where_axes_vary_and_skipped_with_a_reason(mixed, tmp_path):
    (report,) = build_report(ResultStore(str(mixed)), ReportOptions())
    derived(
        report,
        steady_epoch_s=lambda r: r["first_epoch_s"] * (2 if r["memory_fraction"] else 1),
        gpu_mem_peak_mib=lambda r: 16000 * (r["memory_fraction"] or 1.0),
        framework_peak_mib=lambda r: 900.0,
    )
    plots = {p.name: p for p in sweep_plots(report, tmp_path)}
    assert plots["memory-vs-fraction"].path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots["epoch-vs-fraction"].path.stat().st_size > 10_000
    note = plots["epoch-vs-fraction"].note
    assert "not plotted: backend=jax fail=oom seconds=0.05 memory_fraction=null: oom x2" in note
    assert plots["throughput-vs-batch"].path is None
    assert plots["throughput-vs-batch"].note == "batch_size does not vary in this sweep (only 32)"
    assert plots["throughput-vs-gpus"].path is None


def test_gpu_scaling_plot_with_ideal_line(tmp_path):
    spec = {
        "name": "scale",
        "workload": "sleep",
        "params": {"seconds": 0.05},
        "timeout_s": 30,
        "axes": {"batch_size": [8, 32], "gpus": [1, 2]},
    }
    run_sweep(tmp_path, spec, tmp_path / "results", "--num-gpus", "2")
    (report,) = build_report(ResultStore(str(tmp_path / "results")), ReportOptions())
    derived(report, images_per_s=lambda r: 100.0 * r["batch_size"] * r["gpus"] ** 0.8)
    plots = {p.name: p for p in sweep_plots(report, tmp_path)}
    assert plots["throughput-vs-gpus"].path and plots["throughput-vs-batch"].path
    assert plots["memory-vs-fraction"].note.startswith("memory_fraction does not vary")
    assert "no GPU" in plots["epoch-vs-fraction"].note or "does not vary" in plots["epoch-vs-fraction"].note


@pytest.mark.slow
def test_real_training_report(tmp_path):
    spec = {
        "name": "tiny",
        "workload": "keras_tiny",
        "params": {"epochs": 2, "images": 256, "backend": "torch"},
        "timeout_s": 300,
    }
    run_sweep(tmp_path, spec, tmp_path / "results")
    (report,) = build_report(ResultStore(str(tmp_path / "results")), ReportOptions())
    view = report.table("shootout")
    (row,) = view.rows
    assert [c.text for c in row[:2]] == ["torch", "null"]
    epoch, images = row[view.headers.index("epoch s")], row[view.headers.index("images/s")]
    assert re.fullmatch(r"\d+\.\d+", epoch.text) and re.fullmatch(r"\d+(\.\d+)?", images.text)
    assert main(["report", str(tmp_path / "results"), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "keras 3." in page and "torch 2." in page


OLD_SCHEMA_DROPS = (
    "config_json",
    "framework_peak_mib",
    "framework_mem_json",
    "gpu_mem_peak_per_gpu_mib",
    "versions_json",
    "child_env_json",
    "memory_cap_method",
    "epoch_times",
)


def make_old_schema(results: Path) -> int:
    """Rewrite one config's files of a real sweep as one file of an older schema (version 0): columns
    missing (`config_json` among them), and `timeout_s`/`peak_rss_mib` still integers."""
    paths = [
        p
        for p in results.glob("sweep=mix/*.parquet")
        if pq.read_table(p).select(["backend", "memory_fraction", "fail"]).to_pylist()
        == [{"backend": "none", "memory_fraction": 0.5, "fail": "none"}]
    ]
    table = pa.concat_tables(pq.read_table(p) for p in paths).drop_columns(list(OLD_SCHEMA_DROPS))
    table = table.set_column(0, "schema_version", pa.array([0] * table.num_rows, pa.int32()))
    for name in ("timeout_s", "peak_rss_mib"):
        i = table.column_names.index(name)
        table = table.set_column(i, name, pc.cast(pc.round(table.column(name)), pa.int64()))
    for p in paths:
        p.unlink()
    pq.write_table(table, results / "sweep=mix" / "old-schema-0.parquet")
    return len(paths)


def test_old_schema_files_read_with_new_ones(mixed, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(mixed, results)
    assert make_old_schema(results) == 2
    store = ResultStore(str(results))
    table = store.read()
    assert table.num_rows == 18 and table.schema.field("peak_rss_mib").type == pa.float64()
    (report,) = build_report(store, ReportOptions())
    assert row_of(report.table("shootout"), backend="none", memory_fraction="0.5", fail="none")[-1].text == "ok x2"
    page = render_page(report)
    assert f"<dt>schema versions</dt><dd>0, {SCHEMA_VERSION}</dd>" in page
    assert (
        main(
            [
                "query",
                str(results),
                "select schema_version v, count(*) n, count(framework_peak_mib) f from trials group by 1 order by 1",
                "--csv",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines()[1:] == ["0,2,0", f"{SCHEMA_VERSION},16,0"]
    # joined on the config rebuilt from the old rows' columns: nothing missing, nothing new
    # (one baseline run of short sleeps: a threshold wide enough that its band is under it)
    assert main(["compare", str(mixed), str(results), "--metric", "first_epoch_s", "--threshold", "500%"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "0 regressions, 0 noisy, 0 improvements, 9 unchanged, 0 missing, 0 new" in out
    assert main(["compact", str(results)]) == 0
    assert store.read().num_rows == 18 and len(store.files()) == 1


def render_page(report) -> str:
    from grid.reports.page import render

    return render([report], "test")
