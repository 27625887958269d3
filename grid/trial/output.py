"""A trial's output log, read after it ended: its last lines (the evidence of a failure) and the
spec's `metrics:` patterns over its lines: the last match wins; all matches are kept as a
per-epoch series when there is one per epoch.

Whatever its shape, the output becomes a row in seconds: the log is read once, in chunks, and a
line longer than LINE_WINDOW (64 KiB: a binary dump, a progress bar that never ends its line) is
seen by the patterns as its first and last LINE_WINDOW/2 bytes, two lines of their own. Then the
log is bounded: one over LOG_KEEP (32 MiB) keeps its first and last LOG_KEEP/2 bytes around a
line saying how much was cut there, and the row's notes say it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from grid.spec.patterns import MetricPattern

_TAIL_BYTES = 4000
_CHUNK = 1 << 20
LINE_WINDOW = 64 << 10  # what the patterns see of a long line: its first and last half of this
LOG_KEEP = 32 << 20  # the most of a log that is kept: its first and last half of this


def log_tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class _Line:
    """One line as it is read, kept to its first and last LINE_WINDOW/2 bytes."""

    half = LINE_WINDOW // 2

    def __init__(self) -> None:
        self.head = b""
        self.tail = bytearray()
        self.cut = 0  # bytes of the line between the two

    def add(self, part: bytes) -> None:
        if len(self.head) < self.half:
            room = self.half - len(self.head)
            self.head, part = self.head + part[:room], part[room:]
        if len(part) >= self.half:
            self.cut += len(self.tail) + len(part) - self.half
            self.tail = bytearray(part[-self.half :])
            return
        self.tail += part
        over = len(self.tail) - self.half
        if over > 0:
            self.cut += over
            del self.tail[:over]

    def pieces(self, cuts: list[int] | None) -> list[str]:
        """The line as the patterns see it; what was left out of it is appended to `cuts`."""
        if not self.cut:
            return [(self.head + self.tail).decode(errors="replace")]
        if cuts is not None:
            cuts.append(self.cut)
        return [self.head.decode(errors="replace"), self.tail.decode(errors="replace")]


def lines(path: str, offset: int = 0, cuts: list[int] | None = None) -> Iterator[str]:
    """The file's lines from `offset` (\\n, \\r\\n and a progress bar's \\r all end a line); a
    line longer than LINE_WINDOW as its first and last half of it, the bytes left out of each
    such line appended to `cuts`."""
    with open(path, "rb") as f:
        f.seek(offset)
        line: _Line | None = None  # the line read so far, where a chunk ended inside it
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            if chunk.endswith(b"\r"):  # a \r\n cut between two chunks ends one line, not two
                chunk += f.read(1)
            parts = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")  # memchr speed, not re's
            for part in parts[:-1]:
                if line is None and len(part) <= LINE_WINDOW:  # the common case: a whole short line
                    yield part.decode(errors="replace")
                    continue
                line = line or _Line()
                line.add(part)
                yield from line.pieces(cuts)
                line = None
            if parts[-1]:
                line = line or _Line()
                line.add(parts[-1])
        if line is not None:
            yield from line.pieces(cuts)


def bound(path: str, keep: int = LOG_KEEP) -> str | None:
    """Keep a log's first and last keep/2 bytes, with a line saying how much was cut between
    them; the row's note that says so (None: the log is kept whole)."""
    size = 0
    try:
        size = os.path.getsize(path)
        if size <= keep:
            return None
        half = keep // 2
        with open(path, "r+b") as f:
            f.seek(size - half)
            tail = f.read(half)
            cut = size - 2 * half
            f.seek(half)
            f.write(
                f"\n[gpu-grid] {cut} bytes of output cut here: the log keeps its first and last {half} bytes\n".encode()
            )
            f.write(tail)
            f.truncate()
    except OSError as exc:
        return f"its log of {_mib(size)} could not be cut to its first and last {_mib(keep // 2)} ({exc})"
    return f"its log was {_mib(size)}: it keeps its first and last {_mib(half)} ({_mib(cut)} cut between them)"


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


@dataclass
class Scan:
    values: dict[str, Any]
    series: dict[str, list]
    notes: list[str] = field(default_factory=list)


def scan(path: str, offset: int, patterns: dict[str, MetricPattern], epochs: int | None) -> Scan:
    """Every pattern over the output: the last match wins; all matches are kept as a per-epoch
    series when there is one per epoch."""
    compiled = {name: m.pattern for name, m in patterns.items() if m.pattern is not None}
    found: dict[str, list] = {name: [] for name in compiled}
    cuts: list[int] = []
    if compiled:
        try:
            for line in lines(path, offset, cuts):
                for name, pattern in compiled.items():
                    match = pattern.search(line)
                    if match:
                        found[name].append(patterns[name].value(match))
        except OSError as exc:
            return Scan({}, {}, [f"metrics: the output log could not be read ({exc})"])
    result = Scan({}, {}, [])
    if cuts:
        result.notes.append(
            f"metrics: {len(cuts)} output line(s) longer than {LINE_WINDOW >> 10} KiB were matched on their first "
            f"and last {LINE_WINDOW >> 11} KiB ({_mib(sum(cuts))} left out)"
        )
    for name, matches in found.items():
        if not matches:
            result.values[name] = None
            result.notes.append(f"metric {name}: pattern {compiled[name].pattern!r} matched no output line")
            continue
        result.values[name] = matches if name == "epoch_times" else matches[-1]
        numeric = all(isinstance(v, float) for v in matches)
        if numeric and epochs and epochs > 1 and len(matches) == epochs:
            result.series[name] = matches
    return result
