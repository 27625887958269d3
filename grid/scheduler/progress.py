"""Progress of a sweep: a live display on a terminal, one plain line per finished trial elsewhere."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from grid.results.row import Row
from grid.shared import Placement, Trial, TrialStatus
from grid.text import make_console, plain, printable

Describe = Callable[[Trial], str]  # a trial as one line of text


class Progress(Protocol):
    def begin(self, total: int, skipped: int, workers: list) -> None: ...
    def started(self, ticket: int, trial: Trial, attempt: int, placement: Placement) -> None: ...
    def finished(self, ticket: int, row: Row) -> None: ...
    def tick(self) -> None: ...
    def end(self) -> None: ...


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class _Counts:
    """What both displays need: done/total, failures, ETA from finished trial durations."""

    def __init__(self, describe: Describe) -> None:
        self.describe = describe
        self.total = self.done = self.skipped = self.failed = self.lost = 0
        self.workers = 0
        self.durations: list[float] = []
        self.running: dict[int, tuple[str, str, float]] = {}
        self.t0 = time.time()

    def begin(self, total: int, skipped: int, workers: list) -> None:
        self.total, self.skipped, self.done, self.workers = total, skipped, skipped, len(workers)
        self.failed = self.lost = 0
        self.t0 = time.time()

    def started(self, ticket: int, trial: Trial, attempt: int, placement: Placement) -> None:
        label = ",".join(placement.workers)
        self.running[ticket] = (
            label,
            f"{trial.trial_id[:8]} {self.describe(trial)}" + (f" (attempt {attempt})" if attempt else ""),
            time.time(),
        )

    def finished(self, ticket: int, row: Row) -> None:
        _, _, began = self.running.pop(ticket, ("", "", time.time()))
        if row.status is TrialStatus.LOST:
            self.lost += 1
            return
        self.done += 1
        self.durations.append(time.time() - began)
        self.failed += row.status is not TrialStatus.OK

    def eta(self) -> float | None:
        remaining = self.total - self.done
        if not self.durations or not remaining:
            return None if remaining else 0.0
        per = statistics.median(self.durations)
        return per * remaining / max(1, min(self.workers, remaining))

    def headline(self) -> str:
        return (
            f"{self.done}/{self.total} done ({self.skipped} already in results), {self.failed} failed"
            + (f", {self.lost} lost and re-queued" if self.lost else "")
            + f", elapsed {_fmt_s(time.time() - self.t0)}, ETA {_fmt_s(self.eta())}"
        )


def _status_line(row: Row) -> str:
    bits = [f"{row.status.value:<7}", row.trial_id[:8]]
    if row.epochs.steady_epoch_s is not None:
        bits.append(f"steady epoch {row.epochs.steady_epoch_s:.2f}s")
    elif row.process.wall_s is not None:
        bits.append(f"wall {row.process.wall_s:.1f}s")
    if row.epochs.images_per_s:
        bits.append(f"{row.epochs.images_per_s:.0f} img/s")
    if row.status is not TrialStatus.OK and row.outcome.error_type:
        log = row.files.log_path
        bits.append(row.outcome.error_type + (f"; log {log}" if log else ""))
    return "  ".join(bits)


class PlainProgress(_Counts):
    """One line per finished trial: for logs, CI and pipes."""

    def __init__(self, describe: Describe, stream: TextIO | None = None) -> None:
        super().__init__(describe)
        self.stream = stream or sys.stdout

    def begin(self, total: int, skipped: int, workers: list) -> None:
        super().begin(total, skipped, workers)
        print(
            f"[grid] {total} trials, {skipped} already done, {total - skipped} to run on {len(workers)} workers",
            file=self.stream,
            flush=True,
        )

    def finished(self, ticket: int, row: Row) -> None:
        label, desc, _ = self.running.get(ticket, ("?", row.trial_id, 0))
        super().finished(ticket, row)
        line = f"[grid] {self.done}/{self.total} {_status_line(row)}  [{label}] {desc}"
        print(printable(line), file=self.stream, flush=True)

    def tick(self) -> None:
        pass

    def end(self) -> None:
        print(f"[grid] {self.headline()}", file=self.stream, flush=True)


class LiveProgress(_Counts):
    """A rich live view: one line per busy worker with its trial and elapsed time, and totals."""

    def __init__(self, describe: Describe, console: Console | None = None) -> None:
        super().__init__(describe)
        self.console = console or make_console()
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self._last = 0.0

    def begin(self, total: int, skipped: int, workers: list) -> None:
        super().begin(total, skipped, workers)
        self.live.start()

    def finished(self, ticket: int, row: Row) -> None:
        label, desc, _ = self.running.get(ticket, ("?", row.trial_id, 0))
        super().finished(ticket, row)
        style = {TrialStatus.OK: "green", TrialStatus.LOST: "yellow"}.get(row.status, "red")
        self.live.console.print(plain(f"{_status_line(row)}  [{label}] {desc}", style))

    def _render(self) -> Group:
        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("worker")
        table.add_column("trial")
        table.add_column("elapsed", justify="right")
        now = time.time()
        for label, desc, began in sorted(self.running.values()):
            table.add_row(plain(label), plain(desc), _fmt_s(now - began))
        return Group(Text(self.headline(), style="bold"), table)

    def tick(self) -> None:
        if time.time() - self._last > 0.25:
            self.live.update(self._render())
            self._last = time.time()

    def end(self) -> None:
        self.live.update(Text(self.headline(), style="bold"))
        self.live.stop()


def make_progress(describe: Describe, live: bool | None = None) -> Progress:
    live = sys.stdout.isatty() if live is None else live
    return LiveProgress(describe) if live else PlainProgress(describe)
