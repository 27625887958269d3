"""`grid query`: SQL over the results with DuckDB.

Two views, both read by the same code as every other command (grid/results/store.py), so compacted
files, older schema versions and object stores behave as everywhere else:

- `trials`: each trial's latest attempt (what reports use);
- `attempts`: every attempt, duplicates from at-least-once writes dropped.
"""

from __future__ import annotations

import csv
import datetime
import json
from typing import IO, Any

import duckdb
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from grid.errors import ResultsError, UsageError
from grid.results.dedupe import latest_attempts
from grid.results.store import ResultStore
from grid.text import plain

MAX_PRINTED_ROWS = 1000


def connect(store: ResultStore, sweep: str | None = None) -> duckdb.DuckDBPyConnection:
    attempts = store.read(sweep)
    if attempts.num_rows == 0:
        where = f" for sweep {sweep!r}" if sweep else ""
        raise ResultsError(
            f"no results in {store.uri}{where}: nothing to query (sweeps there: {', '.join(store.sweeps()) or 'none'})"
        )
    con = duckdb.connect(":memory:")
    con.register("attempts", attempts)
    con.register("trials", latest_attempts(attempts))
    return con


def run_query(store: ResultStore, sql: str, sweep: str | None = None) -> pa.Table:
    """The query's result as an Arrow table; a bad query is a usage error quoting DuckDB."""
    con = connect(store, sweep)
    try:
        relation = con.sql(sql)
        if relation is None:
            raise UsageError(
                f"the statement returned no rows to show: {sql!r}; use a SELECT over `trials` or `attempts`"
            )
        return relation.to_arrow_table()
    except duckdb.Error as exc:
        columns = ", ".join(c for (c,) in con.execute("select column_name from (describe trials)").fetchall())
        raise UsageError(
            f"query failed: {exc}\nviews: trials (latest attempts), attempts (all); columns: {columns}"
        ) from None
    finally:
        con.close()


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return str(value)


def print_table(table: pa.Table, console: Console) -> None:
    view = Table(
        caption=f"{table.num_rows} row(s)"
        + (f", first {MAX_PRINTED_ROWS} shown (--csv for all)" if table.num_rows > MAX_PRINTED_ROWS else "")
    )
    for field in table.schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
        view.add_column(plain(field.name), justify="right" if numeric else "left")
    shown = table.slice(0, MAX_PRINTED_ROWS)
    for values in zip(*(column.to_pylist() for column in shown.columns)):  # by position: names may repeat
        view.add_row(*(plain(cell(v)) if v is not None else plain("null", "dim") for v in values))
    console.print(view)


def write_csv(table: pa.Table, out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for values in zip(*(column.to_pylist() for column in table.columns)):
        writer.writerow(cell(v) for v in values)
