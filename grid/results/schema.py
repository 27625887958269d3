"""The schema of the results dataset, derived from the typed row (grid/results/row.py), where
every column gpu-grid writes is declared once with its type, meaning and role. The writer types
files from it, readers and reports pick their measurements from it, `grid compare` takes a
measurement's direction from it, and a trial's reported values land in the columns it marks as
reportable. A trial's own metrics (History, `metrics:` patterns, reports) and its config extend a
row by data: a column each, typed by value.
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from grid.errors import ResultsError
from grid.results.row import COLUMNS, I64, SCHEMA_VERSION, Column, F, S

__all__ = ["COLUMNS", "GOALS", "SCHEMA_VERSION", "Column", "known_goal", "metric_columns", "rows_to_table"]

GOALS = ("max", "min")
BY_NAME = {c.name: c for c in COLUMNS}
BASE_FIELDS: list[pa.Field] = [pa.field(c.name, c.type) for c in COLUMNS]
BASE_NAMES = frozenset(BY_NAME)
MEASURES = tuple(c.name for c in COLUMNS if c.role == "measure")
REPORTABLE = frozenset(c.name for c in COLUMNS if c.reportable)
REPORTED_AS_JSON = {c.json_from: c.name for c in COLUMNS if c.json_from}
_ARROW_OF: dict[type, pa.DataType] = {int: I64, float: F, str: S, bool: pa.bool_()}

_HIGHER = re.compile(
    r"(_per_s$|(^|_)(acc|accuracy|auc|precision|recall|f1|iou|map|bleu|rouge|r2|score|"
    r"throughput)(_|$))"
)
_LOWER = re.compile(r"((^|_)(loss|error|err|mae|mse|rmse|perplexity|ppl|latency|time|times)(_|$)|_s$|_mib$|_mb$)")


def known_goal(name: str) -> str | None:
    """A metric's direction: a measurement's declared one, else from its name (`*acc*`, `*_per_s`
    higher; `*loss*`, `*_s`, `*_mib` lower), or None when neither tells."""
    column = BY_NAME.get(name)
    if column is not None and column.role == "measure":
        return column.goal
    lowered = name.lower()
    if _HIGHER.search(lowered):
        return "max"
    if _LOWER.search(lowered):
        return "min"
    return None


def is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def metric_columns(schema: pa.Schema, config_keys: set[str]) -> list[str]:
    """The numeric measurements of a table: gpu-grid's own and the trials' own metrics (any
    numeric column that is neither a base column nor a config value)."""
    return sorted(
        f.name
        for f in schema
        if is_numeric(f.type) and f.name not in config_keys and (f.name in MEASURES or f.name not in BASE_NAMES)
    )


def value_type(value: Any) -> pa.DataType | None:
    """The column type of a value outside the base schema (a metric or an untyped config value);
    None for a null, whose type the value alone cannot tell."""
    if value is None:
        return None
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, list):
        inner = {value_type(v) for v in value if v is not None}
        return pa.list_(inner.pop() if len(inner) == 1 else F)  # a list reported is a list of numbers
    for kind, arrow in _ARROW_OF.items():
        if isinstance(value, kind):
            return arrow
    raise ResultsError(f"cannot store a {type(value).__name__} in a results column: {value!r}")


def rows_to_table(
    rows: list[dict[str, Any]], kinds: dict[str, type] | None = None, known: dict[str, pa.DataType] | None = None
) -> pa.Table:
    """Rows as a table in which every column has one type in every file of a sweep: each base
    column its declared type, config columns their params' types (`kinds`), a metric the type its
    sweep gave it (`known`), else its value's. A column no row gives a value, of a type nobody
    knows yet, is left out: a null-typed column would not read together with the typed one of
    another file."""
    types: dict[str, pa.DataType] = {}
    for name, kind in (known or {}).items():
        if name not in BY_NAME:
            types[name] = kind
    for row in rows:
        for name, value in row.items():
            if name in BY_NAME or (name in types and not (kinds and name in kinds)):
                continue
            if kinds and name in kinds:
                types[name] = _ARROW_OF[kinds[name]]
            elif (kind := value_type(value)) is not None:
                types[name] = kind
    fields = BASE_FIELDS + [pa.field(n, t) for n, t in types.items()]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def as_written(table: pa.Table) -> pa.Table:
    """A table read back (by gpu-grid's readers) in the types its files hold: each base column cast
    to its declared type (`sweep` dictionary-encoded again), so that a merged file reads together
    with the per-attempt files written beside it."""
    for at, name in enumerate(table.column_names):
        column = BY_NAME.get(name)
        if column is not None and table.schema.field(at).type != column.type:
            table = table.set_column(at, name, table.column(at).cast(column.type))
    return table
