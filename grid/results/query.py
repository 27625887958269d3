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


MIN_COLUMN = 6  # characters a column needs to say anything: columns beyond the terminal's width are named instead
MAX_COLUMN = 40


def print_table(table: pa.Table, console: Console, all_columns: bool = False) -> None:
    """The query's rows as a table that fits the terminal: columns null in every row shown are left out
    (`all_columns` keeps them), and those past the terminal's width are named below it."""
    shown = table.slice(0, MAX_PRINTED_ROWS)
    columns = [
        (f, [cell(v) if v is not None else None for v in c.to_pylist()]) for f, c in zip(table.schema, shown.columns)
    ]
    notes = [f"{table.num_rows} row(s)"]
    if table.num_rows > MAX_PRINTED_ROWS:
        notes.append(f"first {MAX_PRINTED_ROWS} shown (--csv for all)")
    if not all_columns and shown.num_rows:
        empty = [f.name for f, values in columns if all(v is None for v in values)]
        columns = [(f, values) for f, values in columns if any(v is not None for v in values)]
        if empty:
            notes.append(f"{len(empty)} column(s) null in every row left out (--all-columns keeps them)")
    fitting: list[tuple[pa.Field, list[str | None]]] = []
    width = 4
    for f, values in columns:
        need = min(MAX_COLUMN, max([len(f.name), *(len(v or "null") for v in values)])) + 3
        if fitting and width + max(MIN_COLUMN + 3, min(need, 16)) > console.width:
            break
        fitting.append((f, values))
        width += need
    if len(fitting) < len(columns):
        rest = [f.name for f, _ in columns[len(fitting) :]]
        notes.append(f"{len(rest)} more column(s) past the terminal's width: {', '.join(rest)} (select them, or --csv)")
    view = Table(caption=plain("; ".join(notes)), caption_justify="left")
    for f, _ in fitting:
        numeric = pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
        view.add_column(plain(f.name), justify="right" if numeric else "left", overflow="fold")
    for i in range(shown.num_rows):  # by position: a query may name two columns alike
        view.add_row(*(plain(values[i]) if values[i] is not None else plain("null", "dim") for _, values in fitting))
    console.print(view)


def write_csv(table: pa.Table, out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for values in zip(*(column.to_pylist() for column in table.columns)):
        writer.writerow(cell(v) for v in values)
