"""What reports lead with, on fixture data: the memory law, the Pareto front, fastest and leanest,
the smallest working fraction, the study's table; `report.json` and the plots; energy columns.

The fixture is a real dataset: the Keras example measured on an H200 (docs/results/gpu-user-scripts).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grid.cli import main
from grid.reports.answers import Point, pareto_front
from grid.reports.build import ReportOptions, build_report
from grid.reports.law import fit_line
from grid.results.schema import BY_NAME
from grid.results.store import ResultStore

H200 = Path(__file__).resolve().parents[1] / "docs" / "results" / "gpu-user-scripts" / "results"


@pytest.fixture(scope="module")
def report():
    (found,) = build_report(ResultStore(str(H200)), ReportOptions(sweep="keras-example-gpu"))
    return found


def test_fit_line_is_exact_on_a_line():
    slope, intercept, r2 = fit_line([0.1, 0.2, 0.4], [23.0, 43.0, 83.0])
    assert (round(slope, 9), round(intercept, 9), r2) == (200.0, 3.0, 1.0)
    slope, intercept, r2 = fit_line([0.1, 0.2, 0.3], [954.0, 954.0, 954.0])
    assert (slope, intercept, r2) == (0.0, 954.0, 1.0)


def test_memory_law_per_backend(report):
    laws = {law.key["backend"]: law for law in report.laws}
    jax, torch = laws["jax"], laws["torch"]
    # jax preallocates the fraction: slope ~ the card, the intercept is the context
    assert 0.98 < jax.slope_per_card < 1.01 and jax.r2 > 0.999 and 500 < jax.intercept_mib < 750
    assert jax.card_mib == 143771 and jax.points == 4
    # torch's cap is a ceiling: it takes what it needs whatever the fraction
    assert abs(torch.slope_per_card) < 0.001 and torch.intercept_mib == pytest.approx(954, abs=1)


def test_answers_fastest_leanest_smallest(report):
    answers = report.answers
    assert answers.leanest.config == {"backend": "jax", "memory_fraction": 0.001}
    assert answers.leanest.memory_mib == pytest.approx(778, abs=1)
    assert answers.fastest.config == {"backend": "jax", "memory_fraction": 0.1}
    smallest = {e["combination"]["backend"]: e for e in answers.smallest}
    assert (smallest["jax"]["smallest_ok"], smallest["jax"]["first_fail"]) == (0.001, 0.0003)
    assert (smallest["torch"]["smallest_ok"], smallest["torch"]["first_fail"]) == (0.003, 0.001)
    assert smallest["torch"]["first_fail_status"] == "oom"


def test_pareto_front(report):
    front = [(p.config["backend"], p.config["memory_fraction"]) for p in report.answers.front]
    assert front == [("jax", 0.001), ("jax", 0.1)]
    points = [Point({}, n, m, s, None) for n, m, s in [("a", 1, 10), ("b", 2, 5), ("c", 3, 20), ("d", 3, 15)]]
    assert [p.label for p in pareto_front(points)] == ["a", "c"]


def test_report_leads_with_the_answer_and_keeps_it_as_data(report, tmp_path):
    titles = [t.title for t in report.tables]
    assert titles[0].endswith("the answer")
    assert titles.index(next(t for t in titles if "Pareto" in t)) < titles.index(
        next(t for t in titles if "median" in t)
    )
    seeds = [t for t in report.tables if "from no cap down" in t.title]
    jax = next(t for t in seeds if "jax" in t.title)
    assert [row[0].text for row in jax.rows] == ["no cap", "0.1", "0.01", "0.003", "0.001", "0.0003"]
    assert jax.rows[-1][-1].text == "oom"
    out = tmp_path / "report"
    assert main(["report", str(H200), "--sweep", "keras-example-gpu", "--out", str(out)]) == 0
    data = json.loads((out / "report.json").read_text())
    (sweep,) = data["sweeps"]
    law = next(law for law in sweep["memory_law"] if law["combination"] == {"backend": "jax"})
    assert 0.98 < law["slope_per_card"] < 1.01
    assert sweep["leanest"]["config"] == {"backend": "jax", "memory_fraction": 0.001}
    assert [p["config"]["memory_fraction"] for p in sweep["pareto_front"]] == [0.001, 0.1]
    for name in ("memory-vs-fraction", "pareto"):
        assert sweep["plots"][name] and Path(sweep["plots"][name]).stat().st_size > 10_000
    page = (out / "index.html").read_text()
    assert "the memory law" in page and "Pareto front" in page


def test_energy_columns_are_declared_and_null_off_gpu(tmp_path, write_spec):
    for name in ("energy_j", "energy_per_epoch_j", "joules_per_image", "energy_method"):
        assert name in BY_NAME
    spec = write_spec({"name": "e", "workload": "sleep", "params": {"seconds": 0.05}})
    assert main(["run", str(spec), "--results", str(tmp_path / "r"), "--runner", "local", "--plain"]) == 0
    (row,) = ResultStore(str(tmp_path / "r")).latest("e").to_pylist()
    assert row["status"] == "ok" and row["energy_j"] is None and row["joules_per_image"] is None


def test_steady_epoch_energy_is_read_between_the_epochs_ends():
    from grid.protocol import Batch, BatchSource, Epoch, Fit, ProcessRecord
    from grid.trial.collect import steady_spans
    from grid.trial.nvml import _at

    series = [(10.0, 0.0), (11.0, 300.0), (13.0, 900.0)]  # (wall time, joules since launch)
    assert _at(series, 10.5) == 150.0 and _at(series, 12.0) == 600.0 and _at(series, 13.0) == 900.0
    epochs = [
        Epoch(5.0, steps=10, end=105.0),  # the first: compiles, left out
        Epoch(1.0, steps=10, end=106.0),
        Epoch(1.5, steps=10, end=107.5),
    ]
    record = ProcessRecord(pid=1, started=100.0, fits=[Fit(Batch(32, BatchSource.CALL), epochs)])
    assert steady_spans([record]) == [(105.0, 106.0, 320), (106.0, 107.5, 320)]


def test_split_keys_tells_values_apart_as_json_does():
    """1, 1.0 and true differ; a NaN equals a NaN; [1] and [1.0] differ; a key some configs lack
    varies; a key every config holds alike is fixed, with its value."""
    from grid.reports.table import split_keys

    nan = float("nan")
    configs = [
        {"same": 0.5, "int_float": 1, "int_bool": 1, "nan": nan, "list": [1], "lacks": "x", "nested": {"a": [1]}},
        {"same": 0.5, "int_float": 1.0, "int_bool": True, "nan": float("nan"), "list": [1.0], "nested": {"a": [1]}},
        {"same": 0.5, "int_float": 1, "int_bool": 1, "nan": nan, "list": [1], "lacks": "x", "nested": {"a": [1]}},
    ]
    varying, fixed = split_keys(configs)
    assert varying == ["int_float", "int_bool", "list", "lacks"]
    assert list(fixed) == ["same", "nan", "nested"] and fixed["same"] == 0.5 and fixed["nested"] == {"a": [1]}
    assert split_keys([{"a": 1}] * 3) == ([], {"a": 1}) and split_keys([]) == ([], {})
