"""Worker busy time over a sweep: how close to 100% the scheduler kept every GPU."""

from __future__ import annotations

from grid.reports.build import busy_table
from grid.results.store import ResultStore
from grid.spec.parse import parse_spec
from grid.sweep import RunOptions, run_sweep


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


def test_busy_table_shows_what_the_gpus_computed():
    """NVML utilisation integrated per trial (gpu_compute_s) beside busy time: busy 100 % of a
    sweep can be computing 10 %; a 2-GPU trial's computing is split over its two workers."""
    import datetime as dt

    t0 = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc)

    def row(worker, start, end, compute):
        return {
            "host": "n",
            "workers": worker,
            "started_at": t0 + dt.timedelta(seconds=start),
            "ended_at": t0 + dt.timedelta(seconds=end),
            "gpu_compute_s": compute,
        }

    rows = [
        row(["g0"], 0, 50, 5.0),
        row(["g0"], 50, 100, 5.0),
        row(["g1"], 0, 50, 0.0),
        row(["g0", "g1"], 100, 120, 4.0),
    ]
    view = busy_table(rows, "busy")
    assert view.headers[-2:] == ["GPU computing s", "computing % of sweep"]
    by_worker = {r[1].text: [c.text for c in r] for r in view.rows}
    assert by_worker["g0"][3:] == ["120", "100%", "12.0", "10.0%"]
    assert by_worker["g1"][3:] == ["70.0", "58%", "2.00", "1.7%"]
    assert "GPUs computing 5.8% of the sweep on average, workers busy 79%" in view.notes[-1]
    no_nvml = busy_table([{**r, "gpu_compute_s": None} for r in rows], "busy")
    assert len(no_nvml.headers) == 5 and len(no_nvml.notes) == 1
