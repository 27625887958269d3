"""`grid query`: DuckDB SQL over `trials` (latest attempts) and `attempts` (all, de-duplicated)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sweep_data import retried_dataset

from grid.cli import main
from grid.results.query import run_query
from grid.results.store import ResultStore

SPEC = {
    "name": "q",
    "workload": "sleep",
    "params": {"seconds": 0.05},
    "timeout_s": 30,
    "axes": {"batch_size": [1, 2], "fail": ["none", "error"]},
}


@pytest.fixture(scope="module")
def retried(tmp_path_factory):
    """4 trials, the 2 failing ones retried once (6 attempts), and one attempt's file written twice."""
    return retried_dataset(tmp_path_factory.mktemp("query"), SPEC)


@pytest.mark.slow
def test_views_hold_latest_trials_and_every_attempt_once(retried):
    store = ResultStore(str(retried))
    assert run_query(store, "select count(*) n from attempts").to_pylist() == [{"n": 6}]
    assert run_query(store, "select count(*) n from trials").to_pylist() == [{"n": 4}]
    rows = run_query(store, "select fail, status, max(attempt) a, count(*) n from trials group by all order by 1")
    assert rows.to_pylist() == [
        {"fail": "error", "status": "error", "a": 1, "n": 2},
        {"fail": "none", "status": "ok", "a": 0, "n": 2},
    ]


@pytest.mark.slow
def test_csv_and_table_output(retried, capsys):
    sql = "select batch_size, fail, status, epoch_times from trials order by batch_size, fail"
    assert main(["query", str(retried), sql, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["batch_size"], r["fail"], r["status"]) for r in rows] == [
        ("1", "error", "error"),
        ("1", "none", "ok"),
        ("2", "error", "error"),
        ("2", "none", "ok"),
    ]
    (epoch,) = json.loads(rows[1]["epoch_times"])  # lists as JSON: one epoch of a 0.05 s sleep
    assert epoch >= 0.05
    assert main(["query", str(retried), "select status, count(*) as n from attempts group by 1 order by 1"]) == 0
    out = capsys.readouterr().out
    assert "status" in out and "error" in out and "2 row(s)" in out


@pytest.mark.slow
def test_bad_sql_and_empty_results_exit_2(retried, tmp_path, capsys):
    assert main(["query", str(retried), "select colour from trials"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "query failed" in err and "colour" in err and "views: trials (latest attempts), attempts (all)" in err
    assert main(["query", str(tmp_path / "none"), "select 1"]) == 2
    assert "no results in" in capsys.readouterr().err


@pytest.mark.slow
def test_select_star_leaves_empty_columns_out_and_fits_the_terminal(retried, capsys):
    assert main(["query", str(retried), "select * from trials"]) == 0
    out = capsys.readouterr().out
    assert "null in every row left out (--all-columns keeps them)" in out
    assert "gpu_mem_peak_mib" not in out.split("row(s)")[0]  # nobody measured it on CPU: not a column
    assert "past the terminal's width" in out and all(len(line) <= 160 for line in out.splitlines())
    assert main(["query", str(retried), "select gpu_mem_peak_mib, status from trials", "--all-columns"]) == 0
    assert "gpu_mem_peak_mib" in capsys.readouterr().out
