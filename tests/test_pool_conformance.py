"""One conformance suite for the pools, as there is one for the stores: the local pool (threads of
the driver) and the Ray pool (one pinned actor per GPU on a real local Ray with 4 fake GPUs) run
the same trials to the same rows and the same outcomes, through the same interface."""

from __future__ import annotations

import pytest

from grid.results.store import ResultStore
from grid.scheduler.pool import Finished, LocalPool
from grid.shared import AttemptTimes, Placement, WorkerInfo
from grid.spec.expand import expand
from grid.spec.parse import parse_spec
from grid.sweep import RunOptions, run_sweep
from tests.test_scheduler import assert_no_gpu_shared

pytestmark = pytest.mark.slow

SPEC = {
    "name": "conformance",
    "workload": "sleep",
    "timeout_s": 3,
    "axes": {"seconds": [0.2, 30.0], "fail": ["none", "error", "oom", "crash"], "gpus": [1, 2]},
    "exclude": [{"seconds": 30.0, "fail": ["error", "oom", "crash"]}, {"seconds": 30.0, "gpus": 2}],
}
EXPECTED = {"none": ("ok", None), "error": ("error", None), "oom": ("oom", None), "crash": ("killed", "SIGABRT")}
# Columns whose values say where and when, not what happened: they differ between any two runs.
PLACE_AND_TIME = {
    "host",
    "node_id",
    "workers",
    "queued_at",
    "dispatched_at",
    "started_at",
    "ended_at",
    "log_path",
    "wall_s",
    "peak_rss_mib",
    "first_epoch_s",
    "epoch_times",
    "error_tail",
    "command",
    "boot_s",
    "finish_s",
}


def run_on(runner: str, results) -> dict[str, dict]:
    spec = parse_spec(SPEC)
    run_sweep(
        spec, RunOptions(results=str(results), runner=runner, num_gpus=4 if runner == "local" else None, live=False)
    )
    return {r["trial_id"]: r for r in ResultStore(str(results)).read(spec.name).to_pylist()}


@pytest.fixture(scope="module")
def rows(ray_local, tmp_path_factory) -> dict[str, dict[str, dict]]:
    return {runner: run_on(runner, tmp_path_factory.mktemp(runner)) for runner in ("local", "ray")}


def outcome(row: dict) -> tuple:
    return (
        row["status"],
        row["signal"],
        row["exit_code"],
        row["error_type"],
        len(row["gpu_ids"]),
        len(row["workers"]),
        row["attempt"],
    )


def test_same_trials_same_outcomes(rows):
    local, ray = rows["local"], rows["ray"]
    assert set(local) == set(ray) and len(local) == 9  # 8 quick trials and one that times out
    assert {tid: outcome(r) for tid, r in local.items()} == {tid: outcome(r) for tid, r in ray.items()}
    for row in local.values():
        if row["seconds"] == 30.0:
            assert row["status"] == "timeout"
        else:
            assert (row["status"], row["signal"]) == EXPECTED[row["fail"]], row["error_tail"]
        assert len(row["gpu_ids"]) == row["gpus"] and len(set(row["gpu_ids"])) == row["gpus"]


def test_same_rows_but_for_where_and_when(rows):
    for trial_id, local in rows["local"].items():
        ray = rows["ray"][trial_id]
        assert set(local) == set(ray)
        differing = {k for k in local if k not in PLACE_AND_TIME and local[k] != ray[k]}
        assert differing <= {"gpu_ids", "child_env_json"}, {k: (local[k], ray[k]) for k in differing}


def test_timing_trials_never_share_a_gpu_on_either_pool(rows):
    for by_trial in rows.values():
        assert_no_gpu_shared(list(by_trial.values()))


def _local(spec, store):
    return LocalPool(spec, store, gpus=["0", "1", "2", "3"])


def _ray(spec, store):
    from grid.scheduler.raypool import RayPool

    return RayPool(spec, store)


@pytest.mark.parametrize("make", [_local, _ray], ids=["local", "ray"])
def test_the_pool_interface(make, ray_local, tmp_path):
    spec = parse_spec({"name": "iface", "workload": "sleep", "params": {"seconds": 0.05}, "axes": {"batch_size": [1]}})
    store = ResultStore(str(tmp_path))
    pool = make(spec, store)
    try:
        workers = pool.workers()
        assert pool.on_gpu and len(workers) == 4 and all(isinstance(w, WorkerInfo) for w in workers)
        assert sorted(g for w in workers for g in w.gpu_ids) == ["0", "1", "2", "3"]
        worker = workers[0]
        placement = Placement(worker.node_id, worker.host, (worker.name,), worker.gpu_ids)
        ticket = pool.submit(expand(spec).trials[0], 0, placement, AttemptTimes(queued_at=0.0))
        done: list[Finished] = []
        for _ in range(300):
            done += pool.wait(timeout=0.1)
            if done:
                break
        assert [d.ticket for d in done] == [ticket] and done[0].error is None
        assert done[0].row.status == "ok" and done[0].row.where.gpu_ids == list(worker.gpu_ids)
        assert pool.refresh() == ([], [])  # nothing joined, nothing lost
        assert store.read("iface").num_rows == 1
    finally:
        pool.close()
