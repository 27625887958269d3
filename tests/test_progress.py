"""Progress displays: the live view on a terminal and plain lines elsewhere."""

from __future__ import annotations

import io

from rich.console import Console
from rows_for_tests import make_row

from grid.results.row import Row
from grid.scheduler.progress import LiveProgress, PlainProgress
from grid.shared import Placement
from grid.spec.expand import expand
from grid.spec.parse import parse_spec

SPEC = parse_spec({"name": "p", "workload": "sleep", "axes": {"batch_size": [1, 2, 3]}})
TRIALS = expand(SPEC).trials
PLACE = Placement("n", "host", ("n0/gpu0",), ("0",))


def _row(trial, status, **extra) -> Row:
    return make_row(SPEC, trial, 0, status, PLACE, **extra)


def _drive(progress):
    progress.begin(3, 1, ["w0", "w1"])
    progress.started(1, TRIALS[0], 0, PLACE)
    progress.started(2, TRIALS[1], 1, PLACE)
    progress.tick()
    progress.finished(1, _row(TRIALS[0], "ok", wall_s=1.0))
    progress.finished(2, _row(TRIALS[1], "oom", error_type="builtins.MemoryError", log_path="/x.log"))
    progress.end()


def test_plain_lines():
    buf = io.StringIO()
    _drive(PlainProgress(lambda t: t.describe(["batch_size"]), stream=buf))
    out = buf.getvalue().splitlines()
    assert out[0] == "[grid] 3 trials, 1 already done, 2 to run on 2 workers"
    assert out[1].startswith("[grid] 2/3 ok") and "[n0/gpu0]" in out[1]
    assert "3/3 oom" in out[2] and "builtins.MemoryError; log /x.log" in out[2] and "(attempt 1)" in out[2]
    assert out[3].startswith("[grid] 3/3 done (1 already in results), 1 failed")


def test_live_view_shows_workers_and_totals():
    buf = io.StringIO()
    progress = LiveProgress(
        lambda t: t.describe(["batch_size"]), console=Console(file=buf, force_terminal=True, width=120)
    )
    _drive(progress)
    text = buf.getvalue()
    assert "n0/gpu0" in text and "batch_size=1" in text and "elapsed" in text
    assert "3/3 done (1 already in results), 1 failed" in text
