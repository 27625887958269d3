"""Reads of a finished sweep and `grid plan` at scale: what `grid status`, `grid report`, `grid query`
and a second `grid run` (a resume with nothing left to do) cost on a sweep of N trials, and what
`grid plan` costs on one axis of M values. Each command is a fresh `grid` process, timed whole.

    python benchmarks/bench_scale.py --trials 1000 10000 --plan 10000 100000 --json benchmarks/scale.json

The sweep is written the way its `grid run` leaves it, without running N processes: per trial an
attempt number claimed, a log and a row (rows.begin, status ok, as the `sleep` workload's), each
through the store of the checkout on PYTHONPATH, with the checkout's merging while a sweep runs
(compact.Background, where it has one), then the end of the run (its merge). `--no-finish` leaves
the files as a killed driver would. Run it with PYTHONPATH pointing at another checkout to measure
that one (the spec and the commands are the same).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

GRID = [sys.executable, "-m", "grid"]


def spec_text(name: str, values: int) -> str:
    axes = {"batch_size": list(range(1, values + 1))}
    return yaml.safe_dump({"name": name, "workload": "sleep", "params": {"seconds": 0}, "axes": axes})


def write_sweep(results: str, spec_path: Path, finish: bool) -> float:
    """The sweep's files as its run leaves them; returns the seconds it took."""
    from grid.results.store import ResultStore, encode_row
    from grid.shared import TrialStatus
    from grid.spec.expand import expand
    from grid.spec.parse import load_spec
    from grid.trial import rows

    started = time.perf_counter()
    spec = load_spec(spec_path)
    store = ResultStore(results)
    trials = expand(spec).trials

    def one(trial):  # type: ignore[no-untyped-def]
        store.claim_attempt(spec.name, trial.trial_id, 0)
        log_file = store.local_log_file(spec.name, trial.trial_id, 0)
        Path(log_file).write_text(f"[gpu-grid] trial {trial.trial_id} attempt 0\n")
        row = rows.begin(spec, trial, 0, None, None)
        row.outcome.status = TrialStatus.OK
        row.files.log_path = store.commit_log(log_file, spec.name, trial.trial_id, 0)
        store.write_encoded(spec.name, trial.trial_id, 0, encode_row(row, spec.param_kinds()))
        return row

    import grid.results.compact as compact_module

    background = getattr(compact_module, "Background", None)  # the checkout's merging while a sweep runs
    merging = background(store, spec.name) if background else None
    with ThreadPoolExecutor(8) as pool:
        written = []
        for row in pool.map(one, trials):
            written.append(row)
            if merging:
                merging.stored()
    if merging:
        merging.wait()
    if finish:
        finish_sweep(store, spec.name, written)
    return time.perf_counter() - started


def finish_sweep(store, sweep: str, written: list) -> None:  # type: ignore[no-untyped-def]
    """What the checkout's `grid run` does once its last trial ended."""
    import grid.sweep as sweep_module

    end = getattr(sweep_module, "finish_sweep", None)
    if end is not None:
        end(store, sweep)
    else:
        sweep_module._merge(store, sweep)


CPU: dict[str, float] = {}  # command -> CPU seconds (user + system) of its process: robust to a loaded box


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of the command (and its CPU seconds in CPU[its name])."""
    cpu, started = _children_cpu(), time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    CPU[argv[3]] = _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def reads(trials: int, work: Path, finish: bool, env: dict[str, str]) -> dict[str, float]:
    results, state = str(work / f"results-{trials}"), str(work / f"state-{trials}")
    spec = work / f"scale-{trials}.yaml"
    spec.write_text(spec_text(f"scale{trials}", trials))
    out: dict[str, float] = {"write_s": write_sweep(results, spec, finish)}
    sweep = f"scale{trials}"
    commands = {
        "status": [*GRID, "status", results, "--sweep", sweep],
        "report": [*GRID, "report", results, "--sweep", sweep, "--out", str(work / f"report-{trials}")],
        "query": [*GRID, "query", results, "select count(*) from attempts", "--sweep", sweep],
        "resume": [*GRID, "run", str(spec), "--results", results, "--plain", "--state-dir", state, "--runner", "local"],
    }
    for name, argv in commands.items():
        out[name], text = timed(argv, env)
        out[f"{name}_cpu"] = CPU[argv[3]]
        print(f"  {name}: {out[name]:.2f} s ({out[f'{name}_cpu']:.2f} s CPU)", flush=True)
        if name == "resume":
            assert "nothing to run" in text, text
        if name == "query":
            assert str(trials) in text, text
    return out


def plan(values: int, work: Path, env: dict[str, str]) -> dict[str, float]:
    spec = work / f"plan-{values}.yaml"
    spec.write_text(spec_text("plan", values))
    seconds = timed([*GRID, "plan", str(spec)], env)[0]
    return {"plan": seconds, "plan_cpu": CPU["plan"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--plan", type=int, nargs="*", default=[10000, 100000])
    parser.add_argument("--no-finish", action="store_true", help="leave the files as a killed driver would")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[1]))}
    sys.path.insert(0, env["PYTHONPATH"].split(os.pathsep)[0])
    figures: dict[str, object] = {
        "checkout": env["PYTHONPATH"],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}",
    }
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        for trials in args.trials:
            figures[f"reads_{trials}"] = reads(trials, work, not args.no_finish, env)
            print(f"{trials} trials: " + ", ".join(f"{k} {v:.2f} s" for k, v in figures[f"reads_{trials}"].items()))
        for values in args.plan:
            figures[f"plan_{values}"] = took = plan(values, work, env)
            print(f"grid plan, {values} values: {took['plan']:.2f} s ({took['plan_cpu']:.2f} s CPU)")
    figures["load_after"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
