"""`search:`: bisection for the out-of-memory boundary, on the `sleep` workload's hidden boundary
(`oom_below_fraction`, `oom_above_batch`) so every answer is known exactly; real child processes."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grid.errors import SpecError
from grid.reports.searches import search_results
from grid.results.dedupe import latest_attempts
from grid.results.store import ResultStore
from grid.scheduler.memory_model import Seen
from grid.scheduler.search import combinations, next_trials, walk
from grid.shared import TrialStatus
from grid.spec.expand import expand
from grid.spec.parse import load_spec, parse_spec
from grid.sweep import RunOptions, plan_lines, run_sweep


def search_spec(name="search", search=None, params=None, **extra):
    data = {
        "name": name,
        "workload": "sleep",
        "params": {"seconds": 0.05, **(params or {})},
        "search": search or {"smallest": "memory_fraction", "low": 0.001, "high": 1.0, "tolerance": 0.01, "confirm": 2},
        "timeout_s": 60,
    }
    data.update(extra)
    return parse_spec(data)


def latest(path, sweep="search"):
    rows = latest_attempts(ResultStore(str(path)).read(sweep)).to_pylist()
    return rows


def run(spec, path, **opts):
    opts = {
        "results": str(path),
        "runner": "local",
        "num_gpus": 2,
        "live": False,
        "state_dir": str(path / "state"),
    } | opts
    return run_sweep(spec, RunOptions(**opts))


# -- bad input


@pytest.mark.parametrize(
    ("search", "extra", "message"),
    [
        ({"smallest": "backend", "low": 0.1, "high": 1.0, "tolerance": 0.1}, {}, "expected memory_fraction"),
        ({"largest": "memory_fraction", "low": 1, "high": 2}, {}, "expected batch_size"),
        ({"smallest": "memory_fraction", "low": 0.5, "high": 0.5, "tolerance": 0.1}, {}, "low 0.5 is not below high"),
        ({"smallest": "memory_fraction", "low": 0.1, "high": 0.2, "tolerance": 0.5}, {}, "wider than the range"),
        ({"smallest": "memory_fraction", "low": 0.1, "high": 1.5, "tolerance": 0.1}, {}, "memory_fraction <= 1"),
        ({"smallest": "memory_fraction", "low": 0.1, "high": 1.0, "tolerance": 0.1, "confirm": -1}, {}, "confirm"),
        ({"smallest": "memory_fraction", "low": 0.1, "high": 1.0}, {}, "search.tolerance: received null"),
        (
            {"smallest": "memory_fraction", "low": 0.1, "high": 1.0, "tolerance": 0.1},
            {"axes": {"memory_fraction": [0.5]}},
            "memory_fraction is also set in params or axes",
        ),
        ({"smallest": "memory_fraction", "low": 0.1, "high": 1.0, "tolerance": 0.1}, {"repeats": 3}, "search.confirm"),
        (
            {"smallest": "memory_fraction", "low": 0.1, "high": 1.0, "tolerance": 0.1, "probe_epochs": 1},
            {},
            "no epochs parameter",
        ),
        ({"smallest": "memory_fraction", "largest": "batch_size"}, {}, "give one of"),
        ({"smallest": "memory_fraction", "low": 0.1, "high": 1.0, "tolerance": 0.1, "step": 2}, {}, "unknown key"),
    ],
)
def test_bad_searches_are_spec_errors(search, extra, message):
    with pytest.raises(SpecError, match=message):
        search_spec(search=search, **extra)


def test_plan_says_what_a_search_will_run():
    spec = search_spec(axes={"backend": ["jax", "torch"]})
    text = "\n".join(plan_lines(spec, expand(spec)))
    assert "up to 9 probe(s)" in text and "2 confirmation(s)" in text and "2 uncapped reference run(s)" in text
    assert "2 combination(s), about 26 trial(s)" in text
    assert "memory_fraction=" not in text.split("fixed:")[1].splitlines()[0]


# -- the walk, replayed over known outcomes (the same code the rounds run)


def outcomes(boundary, smallest=True, confirm_fails=()):
    """A lookup with a hidden boundary: what each needed trial would end as."""

    def run_all(spec):
        statuses = {}
        combo = combinations(spec, expand(spec))[0]
        while True:
            w = walk(spec, combo, statuses.get)
            if not w.needed:
                return w, statuses
            for trial in w.needed:
                value = trial.config[spec.search.axis]
                if value is None:
                    ok = True
                elif trial.tags["search_role"] == "confirm" and value in confirm_fails:
                    ok = False
                else:
                    ok = value >= boundary if smallest else value <= boundary
                statuses[trial.trial_id] = Seen(TrialStatus.OK if ok else TrialStatus.OOM, value)

    return run_all


def test_walk_takes_the_predicted_number_of_probes():
    spec = search_spec()
    w, statuses = outcomes(0.137)(spec)
    assert w.done
    probes = w.step - 1  # the confirmation is the last step
    assert probes == 2 + math.ceil(math.log2((1.0 - 0.001) / 0.01)) == spec.search.probes() == 9
    assert len(statuses) == 9 + 2 + 2  # probes, confirmations, references


def test_walk_goes_on_above_a_value_that_fails_when_confirmed():
    spec = search_spec()
    # 0.141484 works as a probe but not as a timed, full-length run: the answer moves up
    w, statuses = outcomes(0.137, confirm_fails={0.141484})(spec)
    assert w.done
    rows = [{"status": s.status} for s in statuses.values()]
    assert len(rows) > 13


def test_walk_ends_at_once_when_an_end_already_decides():
    spec = search_spec(search={"smallest": "memory_fraction", "low": 0.2, "high": 0.5, "tolerance": 0.01})
    w, statuses = outcomes(0.9)(spec)  # even 0.5 fails
    assert w.done and len([t for t in statuses if statuses[t].status is TrialStatus.OOM]) == 1 and w.step == 1
    w, statuses = outcomes(0.05)(spec)  # 0.2 already works: confirm it and stop
    assert w.done and w.step == 3


# -- real sweeps


def test_search_finds_the_hidden_boundary_exactly(tmp_path):
    spec = search_spec(params={"oom_below_fraction": 0.137}, axes={"backend": ["jax", "torch"]})
    run(spec, tmp_path)
    rows = latest(tmp_path)
    results = search_results(rows, ["backend"])
    assert len(results) == 2
    for result in results:
        assert result.confirmed and result.first_fail_status == "oom"
        assert result.first_fail < 0.137 <= result.last_ok and result.last_ok - result.first_fail <= 0.01
        assert result.probes == spec.search.probes() == 9
        assert result.confirms == {"ok": 2}
        assert result.verdict == f"memory_fraction={result.last_ok} works, {result.first_fail} oom"
    by_role = {role: [r for r in rows if r["search_role"] == role] for role in ("probe", "confirm", "reference")}
    assert len(by_role["probe"]) == 18 and len(by_role["confirm"]) == 4 and len(by_role["reference"]) == 4
    assert not any(r["exclusive"] for r in by_role["probe"])
    assert all(r["exclusive"] for r in by_role["confirm"] + by_role["reference"])
    assert all(r["memory_fraction"] is None for r in by_role["reference"])
    steps = sorted(r["search_step"] for r in by_role["probe"] if r["backend"] == "jax")
    assert steps == list(range(1, 10))
    # nothing left to do: a second run runs nothing
    assert run(spec, tmp_path).rows == []


def test_a_rounds_exclusive_trials_run_before_its_probes_share_the_gpu(tmp_path):
    """One card, two fraction searches: both uncapped references (exclusive) run before the first
    probes, which then share the GPU and load what the references compiled; queued behind the
    probes, a reference waited for them and a probe compiled cold in a packed round."""
    spec = search_spec(
        params={"oom_below_fraction": 0.137},
        axes={"backend": ["jax", "torch"]},
        search={"smallest": "memory_fraction", "low": 0.001, "high": 0.3, "tolerance": 0.1, "confirm": 1},
    )
    run(spec, tmp_path, num_gpus=1, gpu_memory_mib=10_000)
    rows = latest(tmp_path)
    references = [r for r in rows if r["search_role"] == "reference"]
    firsts = [r for r in rows if r["search_role"] == "probe" and r["search_step"] == 1]
    assert len(references) == 2 and len(firsts) == 2
    assert max(r["ended_at"] for r in references) <= min(r["started_at"] for r in firsts)
    assert all(r["shared_with"] for r in firsts), "the first probes (0.3 x 10,000 MiB + context each) share"


def test_largest_batch_size_search(tmp_path):
    spec = search_spec(
        params={"oom_above_batch": 100},
        search={"largest": "batch_size", "low": 8, "high": 512, "tolerance": 1, "confirm": 1},
    )
    run(spec, tmp_path)
    (result,) = search_results(latest(tmp_path), [])
    assert (result.last_ok, result.first_fail, result.confirmed) == (100, 101, True)
    assert result.probes == 2 + math.ceil(math.log2(504)) == 11
    assert not [r for r in latest(tmp_path) if r["search_role"] == "reference"]  # no uncapped run for a batch


def test_ends_that_already_decide_say_so(tmp_path):
    low_works = search_spec(
        name="low",
        params={"oom_below_fraction": 0.01},
        search={"smallest": "memory_fraction", "low": 0.1, "high": 0.9, "tolerance": 0.05, "confirm": 1},
    )
    high_fails = search_spec(
        name="high",
        params={"oom_below_fraction": 0.95},
        search={"smallest": "memory_fraction", "low": 0.1, "high": 0.9, "tolerance": 0.05, "confirm": 1},
    )
    run(low_works, tmp_path)
    run(high_fails, tmp_path)
    (low,) = search_results(latest(tmp_path, "low"), [])
    assert low.verdict == "works even at the range's end memory_fraction=0.1 (confirmed): the boundary is lower"
    assert low.probes == 2
    (high,) = search_results(latest(tmp_path, "high"), [])
    assert high.verdict.startswith("fails even at memory_fraction=0.9 (oom)") and high.last_ok is None
    assert high.probes == 1 and not [r for r in latest(tmp_path, "high") if r["search_role"] == "confirm"]


def test_a_finer_tolerance_reuses_the_probes_already_run(tmp_path):
    coarse = search_spec(
        params={"oom_below_fraction": 0.137},
        search={"smallest": "memory_fraction", "low": 0.001, "high": 1.0, "tolerance": 0.1, "confirm": 1},
    )
    fine = search_spec(
        params={"oom_below_fraction": 0.137},
        search={"smallest": "memory_fraction", "low": 0.001, "high": 1.0, "tolerance": 0.01, "confirm": 1},
    )
    first = run(coarse, tmp_path)
    second = run(fine, tmp_path)
    probes_first = [r for r in first.rows if r.search.search_role == "probe"]
    probes_second = [r for r in second.rows if r.search.search_role == "probe"]
    assert len(probes_first) == 2 + math.ceil(math.log2(0.999 / 0.1)) == 6
    assert len(probes_second) == 9 - 6  # only the steps past where the coarse search stopped
    (result,) = search_results(latest(tmp_path), [])
    assert result.first_fail < 0.137 <= result.last_ok and result.last_ok - result.first_fail <= 0.01


@pytest.mark.slow
def test_a_killed_search_resumes_where_it_stopped(tmp_path, write_spec):
    spec = write_spec(
        {
            "name": "search",
            "workload": "sleep",
            "params": {"seconds": 0.4, "oom_below_fraction": 0.137},
            "search": {"smallest": "memory_fraction", "low": 0.001, "high": 1.0, "tolerance": 0.01, "confirm": 1},
        }
    )
    results = tmp_path / "results"
    argv = [sys.executable, "-m", "grid", "run", str(spec), "--results", str(results), "--runner", "local"]
    argv += ["--num-gpus", "1", "--plain", "--state-dir", str(tmp_path / "state")]
    driver = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once a few probes have their rows, mid-bisection
        done = list((results / "sweep=search").glob("*.parquet")) if results.exists() else []
        if len(done) >= 5:
            break
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(1.0)  # a trial process the kill left behind ends on its own (0.4 s of sleep)
    before = {r["trial_id"] for r in latest(results)}
    assert 5 <= len(before) < 9 + 1 + 1
    second = run(parse_spec(__import__("yaml").safe_load(spec.read_text()), base_dir=tmp_path), results, num_gpus=1)
    rows = latest(results)
    assert not before & {r.trial_id for r in second.rows}, "a finished step ran again"
    (result,) = search_results(rows, [])
    assert result.confirmed and result.probes == 9 and result.first_fail < 0.137 <= result.last_ok
    assert len(rows) == 9 + 1 + 1


def test_next_trials_counts_searches_done(tmp_path):
    spec = search_spec(params={"oom_below_fraction": 0.5}, axes={"backend": ["jax", "torch"]})
    combos = combinations(spec, expand(spec))
    first, done = next_trials(spec, combos, {}, set())
    assert done == 0 and len(first) == 2 * (1 + 2)  # the working end and two references, per search
    assert len({t.tags["search_id"] for t in first}) == 2


# -- predicted from the memory the probes used


def replay(spec, outcome) -> tuple:
    """Walk a spec's one search to its end, each trial it needs ending as `outcome(trial)` (a Seen):
    the last walk, every outcome by trial id, and the trials in the order they ran as (role, value, ok)."""
    combo = combinations(spec, expand(spec))[0]
    seen: dict = {}
    ran = []
    while True:
        w = walk(spec, combo, seen.get)
        if not w.needed:
            return w, seen, ran
        for trial in w.needed:
            found = seen[trial.trial_id] = outcome(trial)
            ran.append((trial.tags["search_role"], trial.config[spec.search.axis], found.ok))


def batch_outcome(need, card_mib: float, extra=lambda role, b: 0.0):
    """A trial's outcome where a batch needs need(b) MiB (and `extra` more for a role) of a card."""

    def outcome(trial) -> Seen:
        b = trial.config["batch_size"]
        ok = need(b) + extra(trial.tags["search_role"], b) <= card_mib
        return Seen(TrialStatus.OK if ok else TrialStatus.OOM, b, need(b) if ok else None, None, card_mib)

    return outcome


def linear(boundary_mib: float, base: float, per_item: float):
    """A lookup whose trials need base + per_item x batch MiB of a card of boundary_mib (as NVML sees it)."""
    return lambda spec: replay(spec, batch_outcome(lambda b: base + per_item * b, boundary_mib))[:2]


def test_a_linear_memory_finds_the_exact_batch_in_four_probes():
    """An LM of the issue's size: 7.4 GiB at batch 1 and 2.69 GiB more per item, on an 80 GiB card.
    The working end (1), a batch that surely fits (3), the predicted boundary (26: a line from far
    below, probed alone), one past it (27): the exact answer in 4 probes, then its confirmation."""
    spec = search_spec(search={"largest": "batch_size", "low": 1, "high": 256, "tolerance": 1, "confirm": 1})
    w, seen = linear(81920.0, 7577.6, 2754.6)(spec)
    assert w.done and not w.model_failed and w.step == 5  # 4 rounds of one probe, then the confirmation
    assert sorted(s.value for s in seen.values()) == [1, 3, 26, 26, 27]  # 26 twice: probed, then confirmed
    assert max(s.value for s in seen.values() if s.status is TrialStatus.OK) == 26 == int((81920 - 7577.6) // 2754.6)


def test_a_prediction_proved_wrong_falls_back_to_bisection():
    """Memory that grows faster than a line (attention's square): the line's boundary runs out of
    memory, and bisection finds the exact boundary between what worked and what failed."""
    spec = search_spec(search={"largest": "batch_size", "low": 1, "high": 256, "tolerance": 1, "confirm": 1})
    w, seen, _ = replay(spec, batch_outcome(lambda b: 1000 + 100 * b + 2 * b * b, 40000.0))
    assert w.done and w.model_failed
    ok = max(s.value for s in seen.values() if s.status is TrialStatus.OK)
    assert ok == max(b for b in range(1, 257) if 1000 + 100 * b + 2 * b * b <= 40000)


def simulate(spec, need, card_mib: float, extra=lambda role, b: 0.0) -> list[tuple[str, int, bool]]:
    """Walk a batch search to its end over a memory need (MiB at a batch; `extra` more for a role) and
    a card: the trials it ran, in order, as (role, batch, fits)."""
    return replay(spec, batch_outcome(need, card_mib, extra))[2]


def test_a_refit_boundary_runs_as_the_confirmation():
    """Memory a little less than linear at large batches (the Lightning LM on an H100: 79 and 80 both
    fit where the line from batches 1 and 5 put the boundary): the first prediction, far from any
    batch that trained, is probed alone (81: the one past it would have trained too, and told
    nothing); the refit's boundary, beside it, runs as the confirmation in the same round as the
    probe past it, and is not run again: 4 probes and 1 confirmation, 5 processes where probed pairs
    and a confirmation of its own took 7. A first prediction stays a probe (a confirmation is full
    length: a wrong one costs a whole run)."""
    spec = search_spec(search={"largest": "batch_size", "low": 1, "high": 128, "tolerance": 1, "confirm": 1})
    ran = simulate(spec, lambda b: 7000 + 900 * b - 0.4 * b * b, 80000.0)
    assert ran == [
        ("probe", 1, True),
        ("probe", 5, True),
        ("probe", 81, True),
        ("confirm", 84, True),
        ("probe", 85, False),
    ]
    # linear memory: the first prediction is exact, and is a probe; then its confirmation
    linear = search_spec(search={"largest": "batch_size", "low": 8, "high": 512, "tolerance": 1, "confirm": 2})
    assert simulate(linear, lambda b: 100 + 7 * b, 1000.0) == [
        ("probe", 8, True),
        ("probe", 25, True),
        ("probe", 128, True),
        ("probe", 129, False),
        ("confirm", 128, True),
        ("confirm", 128, True),
    ]


def test_a_fraction_search_is_not_misled_by_a_cold_compile():
    """The jax ResNet-50 of an H100 run: the uncapped reference compiled cold and peaked at 3,152 MiB
    (its compiler's scratch), every later run at 464 MiB; fractions under 0.0055 of the 81,559 MiB
    card ran out of memory. The smallest peak that trained sets the prediction: 3 probes (0.25, then
    0.006 and 0.004 at once), where the largest peak made the search step down from 0.038 one
    tolerance a round, then bisect: 11 probes, as the H100 run took."""
    spec = search_spec(
        search={"smallest": "memory_fraction", "low": 0.001, "high": 0.25, "tolerance": 0.002, "confirm": 1}
    )

    def outcome(trial) -> Seen:
        f = trial.config["memory_fraction"]
        ok = f is None or f >= 0.0055
        peak = (3152.0 if trial.tags["search_role"] == "reference" else 464.0) if ok else None
        return Seen(TrialStatus.OK if ok else TrialStatus.OOM, f, None, peak, 81559.0)

    w, _, ran = replay(spec, outcome)
    probes = [r for r in ran if r[0] == "probe"]
    assert len(probes) == 3 and not w.model_failed
    assert ran[-1] == ("confirm", 0.006, True) and ("probe", 0.004, False) in ran


def test_a_confirmation_run_early_that_fails_counts_as_failing():
    """The refit's boundary runs out of memory when it runs in full (a full epoch needs more than the
    probes' first steps): it counts as failing, and the search settles below it, confirmed."""
    spec = search_spec(search={"largest": "batch_size", "low": 1, "high": 128, "tolerance": 1, "confirm": 1})
    ran = simulate(
        spec, lambda b: 7000 + 900 * b - 0.4 * b * b, 80000.0, extra=lambda role, b: 500 * (role == "confirm")
    )
    assert ran[3:] == [("confirm", 84, False), ("probe", 85, False), ("probe", 83, True), ("confirm", 83, True)]


@pytest.mark.slow
def test_a_batch_search_on_linear_memory_is_exact_in_four_probes(tmp_path):
    """The sleep workload needs 100 + 7 x batch MiB of a 1000 MiB fake GPU: the largest batch that fits
    is 128, found in 4 probes (the model's prediction, then confirmed), where bisection took 11."""
    spec = search_spec(
        params={"mem_per_item_mib": 7.0, "mem_base_mib": 100.0},
        search={"largest": "batch_size", "low": 8, "high": 512, "tolerance": 1, "confirm": 1},
    )
    run(spec, tmp_path, gpu_memory_mib=1000.0)
    rows = latest(tmp_path)
    (result,) = search_results(rows, [])
    assert (result.last_ok, result.first_fail, result.confirmed) == (128, 129, True)
    assert result.probes == 4 and result.predicted == 128
    probes = sorted((r["search_step"], r["batch_size"], r["status"]) for r in rows if r["search_role"] == "probe")
    assert probes == [(1, 8, "ok"), (2, 25, "ok"), (3, 128, "ok"), (4, 129, "oom")]  # 25: surely fits, for the line
    assert {r["framework_peak_mib"] for r in rows if r["batch_size"] == 128} == {996.0}


@pytest.mark.slow
def test_a_fraction_search_predicts_from_the_uncapped_need(tmp_path):
    """At batch 32 the workload needs 324 MiB of 1000: the smallest fraction is 0.33 (0.32 gives 320),
    predicted from the uncapped reference's peak: the working end, then 0.33 and 0.32 at once."""
    spec = search_spec(
        params={"mem_per_item_mib": 7.0, "mem_base_mib": 100.0, "batch_size": 32},
        search={"smallest": "memory_fraction", "low": 0.01, "high": 1.0, "tolerance": 0.01, "confirm": 1},
    )
    run(spec, tmp_path, gpu_memory_mib=1000.0)
    (result,) = search_results(latest(tmp_path), [])
    assert (result.last_ok, result.first_fail, result.confirmed) == (0.33, 0.32, True)
    assert result.probes == 3 and result.predicted == pytest.approx(0.324)


def test_the_searched_axis_is_a_placeholder_of_the_command(tmp_path, write_spec):
    """`{batch_size}` in a command with `search: largest: batch_size`: each trial gets its searched
    value in its argv (and GRID_BATCH_SIZE), and grid plan says so."""
    (tmp_path / "bs.py").write_text("import sys\nprint('batch', sys.argv[1])\nassert int(sys.argv[1]) <= 40\n")
    path = write_spec(
        {
            "name": "placeholder",
            "command": "python bs.py {batch_size}",
            "search": {"largest": "batch_size", "low": 8, "high": 64, "tolerance": 8, "confirm": 1},
        }
    )
    spec = __import__("grid.spec.parse", fromlist=["load_spec"]).load_spec(str(path))
    lines = plan_lines(spec, expand(spec))
    assert "{batch_size}" in lines[0] and any("{batch_size} is each trial's searched value" in line for line in lines)
    run(spec, tmp_path)
    rows = latest(tmp_path, "placeholder")
    assert all(f"bs.py {r['batch_size']}" in r["command"] for r in rows)
    assert {r["status"] for r in rows if r["batch_size"] > 40} == {"error"}  # its assert: not oom, but an answer


ALLOCATOR_LOG = Path(__file__).parent / "fixtures" / "allocator" / "jax-gpu-bfc-gave-up.txt"


def test_a_probe_ends_when_its_allocator_gives_up(tmp_path, write_spec):
    """A probe whose allocator logs a failed allocation (the real text of a jax probe on an H100,
    which went on waiting 10 s per allocation for 112 s) is ended then, as out of memory: here the
    script would sleep past timeout_s. A trial that is not a probe runs on: the watch is a probe's."""
    text = ALLOCATOR_LOG.read_text().split("---\n", 1)[1]
    (tmp_path / "log.txt").write_text(text)
    (tmp_path / "fit.py").write_text(
        "import sys, time\n"
        "b = int(sys.argv[1])\n"
        "if b > 40:\n"
        "    sys.stderr.write(open('log.txt').read()); sys.stderr.flush()\n"
        "    time.sleep(float(sys.argv[2]))\n"
    )
    search = {"largest": "batch_size", "low": 8, "high": 64, "tolerance": 8, "confirm": 1}
    command = "python fit.py {batch_size} 600"
    path = write_spec({"name": "gives-up", "command": command, "search": search, "timeout_s": 60})
    out = tmp_path / "out"
    run(load_spec(str(path)), out)
    rows = latest(out, "gives-up")
    (result,) = search_results(rows, [])
    assert result.last_ok <= 40 < result.first_fail and result.confirmed
    failed = [r for r in rows if r["batch_size"] > 40]
    assert failed and {r["status"] for r in failed} == {"oom"}
    for r in failed:
        assert r["error_type"] == "OutOfMemory (allocator)"
        assert "ran out of memory trying to allocate 9.00MiB" in r["error_message"]
    # not a probe: the same text, and the script ends by itself
    path = write_spec({"name": "grid", "command": "python fit.py 48 1", "timeout_s": 60}, "grid.yaml")
    run(load_spec(str(path)), out)
    (row,) = latest(out, "grid")
    assert row["status"] == "ok"


@pytest.mark.slow
def test_probes_of_a_hooked_loop_end_once_their_memory_is_known(tmp_path):
    """A Keras probe ends after `probe_steps` optimizer steps (once its peak stopped growing) and says
    so; the confirmation trains in full."""
    spec = parse_spec(
        {
            "name": "steps",
            "workload": "keras_tiny",
            "params": {"backend": "jax", "epochs": 2, "images": 1024},
            "search": {"largest": "batch_size", "low": 16, "high": 48, "tolerance": 31, "confirm": 1}
            | {"probe_steps": 2},
            "timeout_s": 300,
        }
    )
    run(spec, tmp_path)
    rows = latest(tmp_path, "steps")
    probes = [r for r in rows if r["search_role"] == "probe"]
    (confirm,) = [r for r in rows if r["search_role"] == "confirm"]
    assert len(probes) == 2 and all(r["status"] == "ok" for r in rows)
    for probe in probes:
        assert any(n.startswith("a probe: ended by gpu-grid after ") for n in probe["notes"]), probe["notes"]
        assert probe["epoch_times"] is None
    assert len(confirm["epoch_times"]) == 2 and not any("a probe" in n for n in confirm["notes"] or [])
