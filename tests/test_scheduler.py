"""Driver behaviour with real child processes on the local pool (no Ray): exclusivity, gangs, no starvation, resume."""

from __future__ import annotations

import collections
import itertools

import pytest

from grid.errors import UsageError
from grid.results.store import ResultStore
from grid.spec.expand import expand
from grid.spec.parse import parse_spec
from grid.sweep import RunOptions, run_sweep


def sleep_spec(name="s", seconds=0.3, **extra):
    data = {"name": name, "workload": "sleep", "params": {"seconds": seconds}, "timeout_s": 30}
    data.update(extra)
    return parse_spec(data)


def intervals_by_gpu(rows):
    by_gpu = collections.defaultdict(list)
    for row in rows:
        for gpu in row["gpu_ids"]:
            by_gpu[gpu].append((row["started_at"], row["ended_at"], row["trial_id"]))
    return by_gpu


def assert_no_gpu_shared(rows):
    for gpu, spans in intervals_by_gpu(rows).items():
        spans.sort()
        for (_s0, e0, t0), (s1, _e1, t1) in itertools.pairwise(spans):
            assert s1 >= e0, f"GPU {gpu} ran {t0} and {t1} at once"


def test_every_trial_once_no_gpu_shared(tmp_path):
    spec = sleep_spec(axes={"batch_size": list(range(1, 9))})
    run_sweep(spec, RunOptions(results=str(tmp_path), runner="local", num_gpus=3, live=False))
    rows = ResultStore(str(tmp_path)).latest("s").to_pylist()
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    assert len({r["trial_id"] for r in rows}) == 8
    assert_no_gpu_shared(rows)
    assert {g for r in rows for g in r["gpu_ids"]} == {"0", "1", "2"}


def test_gang_trial_is_not_starved(tmp_path):
    # queue: bs1 g1, bs2 g1, bs2 g2 (gang), bs3..bs6 g1 on two GPUs: the gang trial must run before bs3+.
    spec = sleep_spec(
        seconds=0.5,
        axes={"batch_size": [1, 2, 3, 4, 5, 6], "gpus": [1, 2]},
        exclude=[{"gpus": 2, "batch_size": [1, 3, 4, 5, 6]}],
    )
    run_sweep(spec, RunOptions(results=str(tmp_path), runner="local", num_gpus=2, live=False))
    rows = ResultStore(str(tmp_path)).latest("s").to_pylist()
    gang = [r for r in rows if r["gpus"] == 2]
    assert len(gang) == 1 and sorted(gang[0]["gpu_ids"]) == ["0", "1"] and len(gang[0]["workers"]) == 2
    later = [r for r in rows if r["gpus"] == 1 and r["batch_size"] >= 3]
    assert all(r["started_at"] >= gang[0]["ended_at"] for r in later)
    assert_no_gpu_shared(rows)


def test_non_exclusive_trials_share_gpus(tmp_path):
    spec = sleep_spec(seconds=1.0, axes={"batch_size": [1, 2, 3, 4]}, exclusive=False, trials_per_gpu=2)
    run_sweep(spec, RunOptions(results=str(tmp_path), runner="local", num_gpus=2, live=False))
    rows = ResultStore(str(tmp_path)).latest("s").to_pylist()
    assert len(rows) == 4
    starts = sorted(r["started_at"] for r in rows)
    assert (starts[-1] - starts[0]).total_seconds() < 0.9, "four trials on two GPUs x 2 should start together"


def test_trial_bigger_than_any_node_refused_before_running(tmp_path):
    spec = sleep_spec(axes={"gpus": [1, 4]})
    with pytest.raises(UsageError, match="needs gpus=4 on one node, but the largest node has 2 GPU workers"):
        run_sweep(spec, RunOptions(results=str(tmp_path), runner="local", num_gpus=2, live=False))
    assert ResultStore(str(tmp_path)).read().num_rows == 0


def test_resume_skips_terminal_and_retry_failed_reruns(tmp_path):
    spec = sleep_spec(seconds=0.1, axes={"fail": ["none", "error", "oom"]})
    opts = RunOptions(results=str(tmp_path), runner="local", cpu_slots=2, live=False)
    first = run_sweep(spec, opts)
    assert sorted(r.status.value for r in first.rows) == ["error", "ok", "oom"]
    again = run_sweep(spec, opts)
    assert again.rows == [] and again.skipped == 3
    retried = run_sweep(
        spec, RunOptions(results=str(tmp_path), runner="local", cpu_slots=2, live=False, retry_failed=True)
    )
    assert [(r.config["fail"], r.attempt) for r in retried.rows] == [("error", 1)]  # oom is a finding, not retried
    store = ResultStore(str(tmp_path))
    assert store.read("s").num_rows == 4 and store.latest("s").num_rows == 3


def test_outcomes_are_data(tmp_path):
    spec = sleep_spec(seconds=0.1, axes={"fail": ["error", "oom", "crash"]})
    run_sweep(spec, RunOptions(results=str(tmp_path), runner="local", cpu_slots=1, live=False))
    rows = {r["fail"]: r for r in ResultStore(str(tmp_path)).latest("s").to_pylist()}
    assert rows["error"]["status"] == "error" and rows["error"]["error_type"] == "builtins.RuntimeError"
    assert "asked to fail" in rows["error"]["error_tail"]
    assert rows["oom"]["status"] == "oom" and rows["oom"]["error_type"] == "builtins.MemoryError"
    assert rows["crash"]["status"] == "killed" and rows["crash"]["signal"] == "SIGABRT"
    for row in rows.values():
        assert row["exit_code"] in (1, None) and row["log_path"].endswith(f"{row['trial_id']}-0.log")


def test_cpu_budget_ends_greedy_trial_as_oom_and_sweep_continues(tmp_path):
    spec = sleep_spec(seconds=2, axes={"hold_mib": [0, 400]}, memory_limit_mib=200)
    run_sweep(spec, RunOptions(results=str(tmp_path), runner="local", cpu_slots=1, live=False))
    rows = {r["hold_mib"]: r for r in ResultStore(str(tmp_path)).latest("s").to_pylist()}
    assert rows[0]["status"] == "ok"
    assert rows[400]["status"] == "oom" and rows[400]["error_type"] == "CpuMemoryBudgetExceeded"
    assert rows[400]["peak_rss_mib"] > 200


def test_row_has_config_env_and_versions(tmp_path):
    spec = sleep_spec(seconds=0.1, axes={"backend": ["jax"], "memory_fraction": [0.25]})
    run_sweep(spec, RunOptions(results=str(tmp_path), runner="local", num_gpus=1, live=False))
    (row,) = ResultStore(str(tmp_path)).latest("s").to_pylist()
    assert row["backend"] == "jax" and row["memory_fraction"] == 0.25
    assert '"CUDA_VISIBLE_DEVICES": "0"' in row["child_env_json"] and '"KERAS_BACKEND": "jax"' in row["child_env_json"]
    assert row["grid_version"] and row["host"] and row["queued_at"] <= row["dispatched_at"] <= row["started_at"]
    assert row["trial_id"] == expand(spec).trials[0].trial_id


class _ShrunkPool:
    """A real local pool whose second worker's node is gone (as after a node loss)."""

    def __init__(self, pool):
        self.pool, self.on_gpu = pool, pool.on_gpu

    def __getattr__(self, name):
        return getattr(self.pool, name)

    def workers(self):
        return self.pool.workers()[:1]


def test_trials_no_node_can_place_any_more_end_the_sweep_with_a_clear_error(tmp_path):
    from grid.errors import ClusterError
    from grid.scheduler.driver import Scheduler
    from grid.scheduler.pool import LocalPool
    from grid.scheduler.progress import PlainProgress
    from grid.scheduler.resume import plan_attempts

    spec = sleep_spec(seconds=0.1, axes={"gpus": [1, 2]})
    store = ResultStore(str(tmp_path))
    pending, skipped = plan_attempts(spec, expand(spec).trials, store)
    scheduler = Scheduler(
        spec,
        store,
        _ShrunkPool(LocalPool(spec, store, gpus=["0", "1"])),
        PlainProgress(lambda t: t.trial_id),
        stall_timeout_s=1.0,
    )
    scheduler.check_fits = lambda pending: None  # the node shrank after the start-up check
    with pytest.raises(ClusterError, match=r"1 queued trial\(s\) cannot run.*largest node has 1, a trial needs 2"):
        scheduler.run(pending, skipped)
    assert [r["gpus"] for r in store.latest("s").to_pylist()] == [1]


def test_a_worker_side_failure_is_an_error_row_with_its_evidence_not_a_lost_attempt(tmp_path):
    spec = sleep_spec(seconds=0.1, axes={"batch_size": [1]})
    (tmp_path / "sweep=s").mkdir()
    (tmp_path / "sweep=s" / "_logs").write_text("a file where the logs' folder should be\n")
    outcome = run_sweep(
        spec, RunOptions(results=str(tmp_path), runner="local", live=False, state_dir=str(tmp_path / "state"))
    )
    (row,) = ResultStore(str(tmp_path)).read("s").to_pylist()
    assert row["status"] == "error" and row["attempt"] == 0 and outcome.lost == 0
    assert row["error_type"] in ("builtins.FileExistsError", "builtins.NotADirectoryError")
    assert "Traceback" in row["error_tail"] and "_logs" in row["error_message"]
    assert row["notes"] == ["the worker failed to run or record this attempt (not the trial's own error)"]


def test_a_repeat_prefers_a_worker_that_has_not_run_its_config(tmp_path):
    """Among workers equally free, the next repeat of a config goes to one that has not run it yet
    (decorrelated repeats); a worker's load still comes first."""
    from grid.scheduler.driver import Scheduler
    from grid.scheduler.packing import Tenant
    from grid.scheduler.pool import LocalPool
    from grid.scheduler.progress import PlainProgress
    from grid.spec.expand import canonical_config

    spec = sleep_spec(seconds=0.1, axes={"batch_size": [1]}, repeats=2, trials_per_gpu=2)
    store = ResultStore(str(tmp_path))
    scheduler = Scheduler(spec, store, LocalPool(spec, store, gpus=["0", "1"]), PlainProgress(lambda t: t.trial_id))
    first, second = sorted(scheduler.workers)
    repeat = expand(spec).trials[1]

    def order() -> list[str]:
        (names,) = scheduler._free(repeat).values()
        return names

    assert order() == [first, second]  # nothing ran yet: by name
    scheduler.ran_on[canonical_config(repeat.config)].add(first)
    assert order() == [second, first]  # the first worker ran this config: the other one first
    scheduler.tenants[second][1] = Tenant(1, False, None, 0.0)  # the other one is busier now
    assert order()[0] == first  # (whether it may take a second trial is packing's to say)
