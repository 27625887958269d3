"""Worker busy time over a sweep: how close to 100% the scheduler kept every GPU."""

from __future__ import annotations

from grid.reports.build import busy_table
from grid.results.store import ResultStore
from grid.scheduler.sweep import RunOptions, run_sweep
from grid.spec.parse import parse_spec


def test_busy_time_per_worker(tmp_path):
    spec = parse_spec(
        {
            "name": "busy",
            "workload": "sleep",
            "params": {"seconds": 0.6},
            "axes": {"batch_size": [1, 2, 3, 4], "gpus": [1, 2]},
            "timeout_s": 30,
        }
    )
    run_sweep(spec, RunOptions(results=str(tmp_path), runner="local", num_gpus=2, live=False))
    view = busy_table(ResultStore(str(tmp_path)).latest("busy").to_pylist(), "busy")
    by_worker = {row[1].text: row for row in view.rows}
    assert sorted(by_worker) == ["gpu0", "gpu1"]
    # each worker ran its 1-GPU trials and every gang trial: 2 + 4 or so, 8 trial-slots in all
    assert sum(int(row[2].text) for row in view.rows) == 4 + 2 * 4
    for row in view.rows:
        assert 50 <= int(row[4].text.rstrip("%")) <= 100
