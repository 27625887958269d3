"""One type per metric column in a sweep, whichever node writes the row: a trial's own metric
(History, a `metrics:` pattern, a report) gets its type from its first value, kept in the store as
`sweep=<name>/_columns/<metric>` (created once, whoever races for it), and every later value is
written in that type or refused with a note. So no two files of a sweep hold a column in two
types, and each row's file carries a typed null for the sweep's metrics it has no value of."""

from __future__ import annotations

import threading
import urllib.parse

import pyarrow as pa

from grid.results.row import BOOL, F, MetricValue, S
from grid.results.schema import value_type
from grid.results.store import ResultStore

_TYPES = {str(t): t for t in (F, S, BOOL, pa.list_(F))}
_NAMES = {
    t: name for name, t in {"a number": F, "text": S, "true/false": BOOL, "a list of numbers": pa.list_(F)}.items()
}
_known: dict[tuple[str, str], dict[str, pa.DataType]] = {}  # (results URI, sweep) -> fixed types seen here
_lock = threading.Lock()


class MetricTypes:
    """The sweep's metric types as this worker (or driver) knows them: one per sweep run and
    process, shared by its threads; the store is asked only about names it has not met."""

    def __init__(self, store: ResultStore, sweep: str):
        self.store, self.sweep = store, sweep
        self.folder = store.layout.columns(sweep)
        self.types: dict[str, pa.DataType] = {}
        self._lock = threading.Lock()

    def _path(self, name: str) -> str:
        return f"{self.folder}/{urllib.parse.quote(name, safe='')}"

    def _refresh(self) -> None:
        """What the store holds, for names another writer fixed since this process last looked."""
        for entry in self.store.backend.entries(self.folder):
            kind = _TYPES.get(self.store.backend.read(entry.path).decode().strip()) if entry.is_file else None
            if kind is not None:
                with self._lock:
                    self.types.setdefault(urllib.parse.unquote(entry.name), kind)

    def fix(self, name: str, value: MetricValue, declared: pa.DataType | None = None) -> pa.DataType | None:
        """The column's type: the one the sweep fixed, else the declared one, else this value's (now fixed)."""
        if name not in self.types:
            self._refresh()
        if name not in self.types:
            kind = declared or value_type(value)
            if kind is None:
                return None
            if not self.store.backend.create(self._path(name), f"{kind}\n".encode()):
                self._refresh()  # another writer fixed it first: theirs stands
            with self._lock:
                self.types.setdefault(name, kind)
        return self.types.get(name)

    def settle(self, values: dict[str, MetricValue], declared: dict[str, pa.DataType] | None = None) -> list[str]:
        """Each value in its column's type (in place); a value that cannot be is dropped with a note.
        `declared`: types the spec gives (its `metrics:` patterns), fixed whatever the value."""
        notes = []
        for name in list(values):
            value = values[name]
            kind = self.fix(name, value, (declared or {}).get(name))
            if value is None or kind is None or value_type(value) == kind:
                continue
            converted = _convert(value, kind)
            if converted is None:
                notes.append(
                    f"reported {name}={value!r} not kept: the sweep's column {name} holds {_NAMES.get(kind, kind)} "
                    f"(its type was fixed by its first value, or the spec's `metrics:` type)"
                )
            values[name] = converted
        return notes

    def known(self) -> dict[str, pa.DataType]:
        return dict(self.types)


def _convert(value: MetricValue, kind: pa.DataType) -> MetricValue:
    if kind == F and not isinstance(value, (bool, list)):
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
    if kind == S and isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return None
