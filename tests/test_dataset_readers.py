"""A results folder opens anywhere: pandas, pyarrow (parquet and dataset), polars and DuckDB read a
sweep with ok, oom, timeout and error rows with no options, and gpu-grid still reads older files
whose metric columns were null-typed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import yaml

from grid.cli import main
from grid.results.metric_types import MetricTypes
from grid.results.schema import rows_to_table
from grid.results.store import ResultStore

SCRIPT = textwrap.dedent(
    """
    import os, time
    from gridtrial import report

    mode, batch = os.environ["GRID_MODE"], int(os.environ["GRID_BATCH_SIZE"])
    print("training", flush=True)
    if batch > 24:
        raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    if mode == "error":
        raise ValueError("a bad config")
    if mode == "timeout":
        time.sleep(60)
    print(f"test accuracy: {0.5 + batch / 100:.3f}", flush=True)
    report(f1=0.8, stage="done", curve=[0.1, 0.2])
    """
)


def _run(tmp: Path, spec: dict) -> None:
    path = tmp / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    argv = ["run", str(path), "--results", str(tmp / "results"), "--runner", "local", "--plain"]
    argv += ["--cpu-slots", "2", "--state-dir", str(tmp / "state")]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("readers")
    (tmp / "train.py").write_text(SCRIPT)
    common = {"command": "python train.py", "metrics": {"test_acc": r"test accuracy: ([0-9.]+)"}}
    _run(
        tmp,
        {
            "name": "search",
            **common,
            "params": {"mode": "ok"},
            "search": {"largest": "batch_size", "low": 1, "high": 64, "tolerance": 4, "confirm": 1},
        },
    )
    _run(
        tmp,
        {"name": "grid", **common, "timeout_s": 4, "axes": {"mode": ["ok", "error", "timeout"], "batch_size": [8, 32]}},
    )
    return tmp / "results"


def _statuses(table: pa.Table) -> set[str]:
    return set(table.column("status").to_pylist())


READERS = {
    "pyarrow.parquet.read_table": lambda folder: pq.read_table(folder),
    "pyarrow.dataset": lambda folder: ds.dataset(folder).to_table(),
    "pandas.read_parquet": lambda folder: pa.Table.from_pandas(pd.read_parquet(folder), preserve_index=False),
    "polars.read_parquet": lambda folder: pl.read_parquet(f"{folder}/*.parquet").to_arrow(),
    "duckdb": lambda folder: duckdb.sql(f"select * from read_parquet('{folder}/*.parquet')").to_arrow_table(),
}


@pytest.mark.slow
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_opens_a_sweep_with_failed_rows(results, reader):
    for sweep, expected in (("grid", {"ok", "oom", "timeout", "error"}), ("search", {"ok", "oom"})):
        table = READERS[reader](results / f"sweep={sweep}")
        assert _statuses(table) == expected, (reader, sweep)
        ours = ResultStore(str(results)).read(sweep)
        assert table.num_rows == ours.num_rows
        assert {"test_acc", "f1", "stage", "curve"} <= set(table.column_names), (reader, table.column_names)
        acc = dict(zip(table.column("trial_id").to_pylist(), table.column("test_acc").to_pylist()))
        failed = {
            t for t, s in zip(table.column("trial_id").to_pylist(), table.column("status").to_pylist()) if s != "ok"
        }
        assert all(acc[t] is None or acc[t] != acc[t] for t in failed)  # null (NaN in pandas) where never reached
        assert any(isinstance(v, float) and v > 0.5 for v in acc.values())


@pytest.mark.slow
def test_the_whole_results_folder_reads_as_a_partitioned_dataset(results):
    ours = ResultStore(str(results)).read()
    for table in (
        pq.read_table(results),
        ds.dataset(results).to_table(),
        pa.Table.from_pandas(pd.read_parquet(results)),
    ):
        assert table.num_rows == ours.num_rows
        assert set(table.column("sweep").to_pylist()) == {"grid", "search"}
    one_file_each = [list((results / f"sweep={s}").glob("*.parquet")) for s in ("grid", "search")]
    assert [len(files) for files in one_file_each] == [1, 1]  # merged at the end of each run


def test_a_metric_without_a_value_is_no_null_typed_column():
    row = {"sweep": "s", "trial_id": "t", "attempt": 0, "status": "oom", "test_acc": None, "f1": 0.5}
    table = rows_to_table([row])
    assert "test_acc" not in table.column_names and table.schema.field("f1").type == pa.float64()
    typed = rows_to_table([row], known={"test_acc": pa.float64()})
    assert typed.schema.field("test_acc").type == pa.float64() and typed.column("test_acc").to_pylist() == [None]
    assert not any(pa.types.is_null(f.type) for f in typed.schema)


def test_older_files_with_null_typed_metrics_still_read_through_grid(tmp_path):
    folder = tmp_path / "sweep=old"
    folder.mkdir()
    base = {"sweep": ["old"], "attempt": pa.array([0], pa.int32())}
    pq.write_table(
        pa.table({**base, "trial_id": ["a"], "status": ["oom"], "acc": pa.array([None], pa.null())}),
        folder / "a-0.parquet",
    )
    pq.write_table(
        pa.table({**base, "trial_id": ["b"], "status": ["ok"], "acc": pa.array([0.9])}), folder / "b-0.parquet"
    )
    table = ResultStore(str(tmp_path)).read("old")
    assert table.schema.field("acc").type == pa.float64()
    assert sorted(table.column("acc").to_pylist(), key=str) == [0.9, None]


def test_a_metric_keeps_the_type_of_its_first_value_on_every_writer(tmp_path):
    store = ResultStore(str(tmp_path))
    first, second = MetricTypes(store, "s"), MetricTypes(store, "s")  # two workers of one sweep
    assert first.settle({"acc": 0.9, "stage": "done", "missing": None}) == []
    later = {"acc": "n/a", "stage": 3.0, "missing": None}
    notes = second.settle(later)
    assert later == {"acc": None, "stage": "3.0", "missing": None}
    assert notes == [
        "reported acc='n/a' not kept: the sweep's column acc holds a number (its type was fixed by its first value, "
        "or the spec's `metrics:` type)"
    ]
    assert second.known() == {"acc": pa.float64(), "stage": pa.string()}
    assert sorted(p.name for p in (tmp_path / "sweep=s" / "_columns").iterdir()) == ["acc", "stage"]
