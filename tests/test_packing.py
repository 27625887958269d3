"""Packing by footprint: trials that are not exclusive share a GPU while the sum of their expected
footprints (cap x card + context, or what earlier rows measured) fits the card minus a margin."""

from __future__ import annotations

import pytest

from grid.errors import UsageError
from grid.results.store import ResultStore
from grid.scheduler.packing import BUSY_LIMIT_PCT, CONTEXT_MIB, Tenant, fits, footprint, margin_mib
from grid.shared import Trial
from grid.spec.parse import parse_spec
from grid.sweep import RunOptions, run_sweep
from tests.conftest import HAS_GPU
from tests.test_scheduler import intervals_by_gpu

CARD = 10_000.0


def packed_spec(name="pack", fraction=0.1, repeats=8, seconds=1.0, **extra):
    data = {
        "name": name,
        "workload": "sleep",
        "params": {"seconds": seconds, "memory_fraction": fraction},
        "repeats": repeats,
        "exclusive": False,
        "timeout_s": 60,
    }
    data.update(extra)
    return parse_spec(data)


def most_at_once(rows):
    """Per GPU, the most trials whose runs overlapped at one moment."""
    peaks = {}
    for gpu, spans in intervals_by_gpu(rows).items():
        marks = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])  # ends first at a tie
        now = peak = 0
        for _, step in marks:
            now += step
            peak = max(peak, now)
        peaks[gpu] = peak
    return peaks


def trial(fraction, exclusive=False):
    return Trial("t", "sleep", {"memory_fraction": fraction}, 0, 0, exclusive=exclusive)


def test_footprint_is_the_cap_or_what_was_measured():
    assert footprint(trial(0.1), CARD, {}) == 0.1 * CARD + CONTEXT_MIB
    assert footprint(trial(None), CARD, {}) is None  # no cap, never measured: may need the card
    measured = {'{"memory_fraction":0.1}': 2500.0}
    assert footprint(trial(0.1), CARD, measured) == 2500.0  # it measured more than its cap suggests
    assert footprint(trial(0.1), None, {}) is None


def test_fits_never_over_commits():
    room = CARD - margin_mib(CARD)
    tenants = [Tenant(i, False, 1700.0) for i in range(5)]
    assert 5 * 1700 <= room < 6 * 1700
    assert fits(trial(0.1), 1700.0, CARD, tenants[:4], 2)
    assert not fits(trial(0.1), 1700.0, CARD, tenants, 2)
    assert not fits(trial(0.1, exclusive=True), 1700.0, CARD, tenants[:1], 2)  # a timing trial runs alone
    assert not fits(trial(0.1), 1700.0, CARD, [Tenant(9, True, 1700.0)], 2)  # nothing joins a timing trial
    assert not fits(trial(None), None, CARD, tenants[:1], 2)  # unknown footprint: alone
    assert fits(trial(None), None, CARD, [], 2)
    assert fits(trial(0.1), None, None, tenants[:1], 2) and not fits(trial(0.1), None, None, tenants[:2], 2)


def test_trials_that_keep_the_gpu_busy_do_not_share_it():
    """Memory is not the only limit: expected busy shares (NVML utilisation of earlier rows of each
    config) must add up to no more than the GPU's time; unknown counts as none."""
    tenants = [Tenant(1, False, 1700.0, 45.0), Tenant(2, False, 1700.0, 30.0)]
    assert BUSY_LIMIT_PCT == 100.0
    assert fits(trial(0.1), 1700.0, CARD, tenants, 8, busy_pct=25.0)  # 45 + 30 + 25: the GPU's whole time
    assert not fits(trial(0.1), 1700.0, CARD, tenants, 8, busy_pct=26.0)
    assert not fits(trial(0.1), 1700.0, CARD, [Tenant(1, False, 1700.0, 95.0)], 8, busy_pct=10.0)
    assert fits(trial(0.1), 1700.0, CARD, [Tenant(1, False, 1700.0)], 8)  # never measured: packs by memory


def test_the_first_trial_of_a_program_compiles_alone_then_the_rest_pack(tmp_path):
    """With the compilation cache on, the first trial of a program on a node runs before the ones that
    would load what it compiles; they pack once it ended, and what it measured spaces them."""
    spec = packed_spec(repeats=6, seconds=0.5, params={"seconds": 0.5, "memory_fraction": 0.1, "backend": "jax"})
    opts = RunOptions(results=str(tmp_path), runner="local", num_gpus=1, gpu_memory_mib=CARD, live=False)
    run_sweep(spec, opts)
    rows = sorted(ResultStore(str(tmp_path)).latest("pack").to_pylist(), key=lambda r: r["started_at"])
    first, rest = rows[0], rows[1:]
    assert first["shared_with"] == [] and all(r["started_at"] >= first["ended_at"] for r in rest)
    assert most_at_once(rest) == {"0": 5}


def test_packing_fills_a_fake_card_and_never_exceeds_it(tmp_path):
    # 0.1 x 10000 + 700 = 1700 MiB each; 10000 - 1024 margin holds 5 of them, not 6
    spec = packed_spec(repeats=8)
    opts = RunOptions(results=str(tmp_path), runner="local", num_gpus=1, gpu_memory_mib=CARD, live=False)
    run_sweep(spec, opts)
    rows = ResultStore(str(tmp_path)).latest("pack").to_pylist()
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}
    assert most_at_once(rows) == {"0": 5}
    first_five = sorted(rows, key=lambda r: r["started_at"])[:5]
    for row in first_five:
        assert len(row["shared_with"]) >= 4 and row["exclusive"] is False
        assert any("shared its GPU" in note for note in row["notes"])


@pytest.mark.skipif(HAS_GPU, reason="a real GPU 0 reports its memory through NVML: packing goes by footprint there")
def test_without_card_memory_trials_per_gpu_bounds_the_count(tmp_path):
    spec = packed_spec(repeats=4, trials_per_gpu=3)
    run_sweep(spec, RunOptions(results=str(tmp_path), runner="local", num_gpus=1, live=False))
    assert most_at_once(ResultStore(str(tmp_path)).latest("pack").to_pylist()) == {"0": 3}


def test_exclusive_trials_share_with_nobody(tmp_path):
    spec = packed_spec(repeats=3, exclusive=True, seconds=0.3)
    opts = RunOptions(results=str(tmp_path), runner="local", num_gpus=1, gpu_memory_mib=CARD, live=False)
    run_sweep(spec, opts)
    rows = ResultStore(str(tmp_path)).latest("pack").to_pylist()
    assert most_at_once(rows) == {"0": 1} and all(r["shared_with"] == [] for r in rows)


@pytest.mark.slow
def test_ray_workers_pack_by_footprint(tmp_path, ray_local):
    # 0.2 x 10000 + 700 = 2700 MiB: three per fake GPU, on each of the session Ray's four
    spec = packed_spec(name="rpack", fraction=0.2, repeats=16, seconds=2.0)
    opts = RunOptions(results=str(tmp_path), runner="ray", gpu_memory_mib=CARD, live=False)
    run_sweep(spec, opts)
    rows = ResultStore(str(tmp_path)).latest("rpack").to_pylist()
    assert len(rows) == 16 and {r["status"] for r in rows} == {"ok"}
    peaks = most_at_once(rows)
    assert max(peaks.values()) == 3 and len(peaks) == 4, peaks


def test_compare_never_mixes_shared_and_exclusive_timings(tmp_path):
    from grid.reports.compare import CompareOptions, compare

    base, cur = tmp_path / "base", tmp_path / "cur"
    run_sweep(
        packed_spec(repeats=3, seconds=0.3, exclusive=True),
        RunOptions(results=str(base), runner="local", num_gpus=1, gpu_memory_mib=CARD, live=False),
    )
    run_sweep(
        packed_spec(repeats=3, seconds=0.3),
        RunOptions(results=str(cur), runner="local", num_gpus=1, gpu_memory_mib=CARD, live=False),
    )
    assert all(r["shared_with"] for r in ResultStore(str(cur)).latest("pack").to_pylist())
    # the shared runs are a config of their own: nothing in common with the exclusive baseline
    # the advice names what differs: the current run's trials were packed with each other
    said = r"baseline \S+: 0 of 3 trial\(s\) shared a GPU; current \S+: 3 of 3 trial\(s\) shared a GPU: 3 packed"
    with pytest.raises(UsageError, match=said + r" with trials of their own sweep \(exclusive: false"):
        compare(str(base), str(cur), CompareOptions(metric="wall_s"))
    with pytest.raises(UsageError, match="--ignore: gpu_shared keeps the timings"):
        compare(str(base), str(cur), CompareOptions(metric="wall_s", ignore=("gpu_shared",)))
