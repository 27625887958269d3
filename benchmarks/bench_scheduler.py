"""Scheduler overhead: N `sleep` trials of S seconds on G fake GPUs (one local Ray), against the
ideal makespan N*S/G; per-trial dispatch latency; then the same grid through Ray Tune in the
same Ray (one GPU per trial, each trial running the same child `python -m tasks.sleep trial.json`).

    python benchmarks/bench_scheduler.py --trials 1000 --seconds 1 --gpus 16 --json benchmarks/last-run.json

Prints a Markdown report (the numbers in benchmarks/RESULTS.md come from it) and writes every
number as JSON. What limits a 2-core box is measured too: the CPU one trial's child process costs
(interpreter start and exit), against the CPU the machine has per second of the ideal run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray binds 127.0.0.1 only

import psutil
import ray
from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grid.results.store import ResultStore  # noqa: E402
from grid.scheduler.raypool import connect  # noqa: E402
from grid.shared import Placement  # noqa: E402
from grid.spec.expand import expand  # noqa: E402
from grid.spec.parse import parse_spec  # noqa: E402
from grid.sweep import RunOptions, run_sweep  # noqa: E402
from grid.trial import warm  # noqa: E402
from grid.trial.isolate import run_child  # noqa: E402
from grid.trial.launch import Launch, prepare  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def dist(values: list[float]) -> dict[str, float]:
    return {
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


class CpuWatch:
    """Where the CPU goes while a phase runs: this driver, Ray's workers and actors, the trial
    processes they launched, Ray's own daemons, and everything else on the (shared) machine."""

    def __init__(self) -> None:
        self.first: dict[int, tuple[str, float, float]] = {}
        self.last: dict[int, tuple[str, float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        tree = [me, *me.children(recursive=True)]
        for proc in tree:
            try:
                name, t = proc.name(), proc.cpu_times()
            except psutil.Error:
                continue
            if _is_warm_parent(proc):  # its forked trials are reaped by it: its children times count
                sample = ("trial processes", t.user + t.system, t.children_user + t.children_system)
                self.first.setdefault(proc.pid, ("trial processes", 0.0, 0.0) if self._started else sample)
                self.last[proc.pid] = sample
                continue
            if _parent_is_worker(proc):
                continue  # a trial process: counted in its worker's children times once it is waited for
            kind = "driver" if proc.pid == me.pid else "ray workers" if name.startswith("ray::") else "ray daemons"
            sample = (kind, t.user + t.system, t.children_user + t.children_system)
            self.first.setdefault(proc.pid, (kind, 0.0, 0.0) if self._started else sample)
            self.last[proc.pid] = sample

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def __enter__(self) -> CpuWatch:
        self._started = False
        self._sample()
        self._started = True
        self._machine0, self._t0 = psutil.cpu_times(), time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self._machine1, self.wall = psutil.cpu_times(), time.monotonic() - self._t0

    def summary(self) -> dict[str, float]:
        """Average cores busy, by kind; `trial processes` are the children the Ray workers waited for."""
        cores = {"driver": 0.0, "ray workers": 0.0, "trial processes": 0.0, "ray daemons": 0.0}
        for pid, (kind, own, kids) in self.last.items():
            _kind0, own0, kids0 = self.first[pid]
            cores[kind] += own - own0
            if kind in ("ray workers", "trial processes"):
                cores["trial processes"] += kids - kids0
        busy = lambda t: t.user + t.system + t.nice + t.irq + t.softirq + t.steal  # noqa: E731
        machine = busy(self._machine1) - busy(self._machine0)
        cores["other (not this run)"] = max(0.0, machine - sum(cores.values()))
        return {k: v / self.wall for k, v in cores.items()} | {"machine": machine / self.wall}


def _is_warm_parent(proc: psutil.Process) -> bool:
    try:
        return "gridtrial.zygote" in proc.cmdline()
    except psutil.Error:
        return False


def _parent_is_worker(proc: psutil.Process) -> bool:
    try:
        return any(p.name().startswith("ray::") for p in proc.parents())
    except psutil.Error:
        return True


def sleep_trial(scratch: Path, seconds: float, batch_size: int = 1, gpu_ids: tuple[str, ...] = ()) -> Launch:
    """One `sleep` trial as a worker starts it cold (`python -m gridtrial` under the trial
    bootstrap, grid/trial/launch.py), for Ray Tune and for the child-cost measure."""
    params = {"seconds": seconds, "batch_size": batch_size}
    spec = parse_spec({"name": "bench-child", "workload": "sleep", "params": params})
    (trial,) = expand(spec).trials
    placement = Placement(node_id="bench", host=platform.node(), workers=("bench",), gpu_ids=gpu_ids)
    return prepare(spec, trial, 0, placement, str(scratch))


def child_cpu_cost(repeats: int = 20) -> dict[str, float]:
    """CPU seconds one trial's child costs when its work is nothing (`sleep` of 0 s), through the
    real launcher (grid/trial/isolate.py): a new interpreter (cold), and a fork of a warm parent
    (what a worker does by default); what every trial spends on top of its own work."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-child-"))
    launch = sleep_trial(scratch, 0.0)
    argv, env = launch.argv, launch.env
    before, walls = resource.getrusage(resource.RUSAGE_CHILDREN), []
    for _ in range(repeats):
        out = run_child(argv, env=env, cwd=str(scratch), log_path=str(scratch / "log"), timeout_s=60, bootstrapped=True)
        walls.append(out.wall_s)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cold = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / repeats
    plan = warm.plan(argv, env, {}, True)
    assert isinstance(plan, warm.Plan), plan
    parent, why = warm.starter().parent(plan)
    assert parent is not None and parent.proc is not None, why
    zygote = psutil.Process(parent.proc.pid)
    t0, warm_walls = zygote.cpu_times(), []
    for _ in range(repeats):
        out = run_child(argv, env=env, cwd=str(scratch), log_path=str(scratch / "log"), timeout_s=60, warm=parent)
        warm_walls.append(out.wall_s)
    t1 = zygote.cpu_times()
    forked = (t1.children_user - t0.children_user + t1.children_system - t0.children_system) / repeats
    forked += (t1.user - t0.user + t1.system - t0.system) / repeats  # the parent's fork and bookkeeping
    warm.stop_all()
    return {
        "cpu_s": cold,
        "wall_s": statistics.median(walls),
        "warm_cpu_s": forked,
        "warm_wall_s": statistics.median(warm_walls),
    }


def run_grid(trials: int, seconds: float, gpus: int, results: str, sample_interval_ms: int | None = None) -> dict:
    data = {
        "name": "bench",
        "workload": "sleep",
        "params": {"seconds": seconds},
        "timeout_s": 600,
        "axes": {"batch_size": list(range(1, trials + 1))},
    }
    if sample_interval_ms:
        data["sample_interval_ms"] = sample_interval_ms
    spec = parse_spec(data)
    with CpuWatch() as cpu, contextlib.redirect_stdout(io.StringIO()):
        t0 = time.time()
        run_sweep(spec, RunOptions(results=results, num_gpus=gpus, live=False), console=Console(file=io.StringIO()))
        wall = time.time() - t0
    rows = ResultStore(results).read("bench").to_pylist()
    ts = lambda r, k: r[k].timestamp()  # noqa: E731
    first, last = min(ts(r, "dispatched_at") for r in rows), max(ts(r, "ended_at") for r in rows)
    by_worker: dict[str, list[dict]] = {}
    for row in rows:
        by_worker.setdefault(row["workers"][0], []).append(row)
    gaps, handback = [], []
    for runs in by_worker.values():
        runs.sort(key=lambda r: ts(r, "started_at"))
        gaps += [ts(b, "started_at") - ts(a, "ended_at") for a, b in itertools.pairwise(runs)]
        # the part of a gap before the driver dispatched the next trial: the worker finishing the
        # row (records, Parquet write and fsync, log), Ray returning it, the driver choosing
        handback += [ts(b, "dispatched_at") - ts(a, "ended_at") for a, b in itertools.pairwise(runs)]
    return {
        "trials": len(rows),
        "ok": sum(r["status"] == "ok" for r in rows),
        "wall_s": wall,
        "makespan_s": last - first,
        "startup_s": first - t0,
        "dispatch_to_child_start_s": dist([ts(r, "started_at") - ts(r, "dispatched_at") for r in rows]),
        "queued_to_child_start_s": dist([ts(r, "started_at") - ts(r, "queued_at") for r in rows]),
        "gpu_idle_between_trials_s": dist(gaps),
        "end_to_next_dispatch_s": dist(handback),
        "child_wall_s": dist([r["wall_s"] for r in rows]),
        "workers": len(by_worker),
        "cpu": cpu.summary(),
        "sample_interval_ms": spec.sample_interval_ms,
    }


def tune_trial(config: dict) -> dict:
    """One Tune trial: the same child process a gpu-grid worker runs, on the GPU Tune gave it."""
    scratch = Path(tempfile.mkdtemp(prefix="tune-trial-"))
    gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
    gpu = ",".join(gpu_ids)
    launch = sleep_trial(scratch, config["seconds"], config["batch_size"], gpu_ids)
    started = time.time()
    code = subprocess.run(
        launch.argv,
        env=launch.env,
        cwd=scratch,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ).returncode
    ended = time.time()
    recorded = any((scratch / "records").iterdir())  # the bootstrap's record: the trial really ran
    return {"ok": int(code == 0 and recorded), "started": started, "ended": ended, "gpu": gpu}


def run_tune(trials: int, seconds: float, reuse_actors: bool, storage: str) -> dict:
    from ray import tune

    space = {"batch_size": tune.grid_search(list(range(1, trials + 1))), "seconds": seconds, "repo": str(REPO)}
    tuner = tune.Tuner(
        tune.with_resources(tune_trial, {"cpu": 0, "gpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(reuse_actors=reuse_actors),
        run_config=tune.RunConfig(storage_path=storage, name="bench", verbose=0),
    )
    with CpuWatch() as cpu, contextlib.redirect_stdout(io.StringIO()):
        t0 = time.time()
        grid = tuner.fit()
        wall = time.time() - t0
    metrics = [r.metrics for r in grid if r.metrics]
    first, last = min(m["started"] for m in metrics), max(m["ended"] for m in metrics)
    by_gpu: dict[str, list[dict]] = {}
    for m in metrics:
        by_gpu.setdefault(m["gpu"], []).append(m)
    gaps = []
    for runs in by_gpu.values():
        runs.sort(key=lambda m: m["started"])
        gaps += [b["started"] - a["ended"] for a, b in itertools.pairwise(runs)]
    return {
        "trials": len(metrics),
        "ok": sum(m["ok"] for m in metrics),
        "wall_s": wall,
        "makespan_s": last - first,
        "startup_s": first - t0,
        "gpu_idle_between_trials_s": dist(gaps) if gaps else {},
        "reuse_actors": reuse_actors,
        "cpu": cpu.summary(),
    }


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "os": platform.platform(),
        "loadavg_before": os.getloadavg(),
    }


def _cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def report(out: dict) -> str:
    a = out["args"]
    ideal = a["trials"] * a["seconds"] / a["gpus"]
    g, lines = out["grid"][0], []
    lines.append(
        f"{a['trials']} `sleep` trials of {a['seconds']} s on {a['gpus']} fake GPUs; ideal makespan {ideal:.1f} s\n"
    )
    lines.append(
        "| runner | trials ok | makespan (first dispatch to last end) | vs ideal | wall incl. startup | "
        "GPU idle between trials p50 / p99 | CPU busy (mean) |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    runs = [(f"gpu-grid (RSS sampled every {r['sample_interval_ms']} ms)", r) for r in out["grid"]]
    runs += [(f"Ray Tune (reuse_actors={t['reuse_actors']})", t) for t in out["tune"]]
    for name, r in runs:
        idle = r["gpu_idle_between_trials_s"]
        lines.append(
            f"| {name} | {r['ok']}/{r['trials']} | {r['makespan_s']:.1f} s | {r['makespan_s'] / ideal:.3f}x | "
            f"{r['wall_s']:.1f} s | {idle.get('p50', 0):.3f} / {idle.get('p99', 0):.3f} s | "
            f"{r['cpu']['machine']:.2f} of {out['machine']['cpus']} cores |"
        )
    lines.append("")
    for t in out["tune"]:
        lines.append(
            f"Ray Tune (reuse_actors={t['reuse_actors']}) / gpu-grid (default sampling): makespan "
            f"{t['makespan_s'] / g['makespan_s']:.2f}x, wall {t['wall_s'] / g['wall_s']:.2f}x  "
        )
    for r in out["grid"]:
        d, q, w = r["dispatch_to_child_start_s"], r["queued_to_child_start_s"], r["child_wall_s"]
        lines.append(
            f"\ngpu-grid, RSS sampled every {r['sample_interval_ms']} ms, per trial: dispatch (driver hands the "
            f"trial to its worker) to child start p50 {d['p50'] * 1000:.0f} ms, p99 {d['p99'] * 1000:.0f} ms; "
            f"child wall (a {a['seconds']} s sleep) p50 {w['p50']:.3f} s, p99 {w['p99']:.3f} s; queued to child "
            f"start p50 {q['p50']:.1f} s (all {a['trials']} are queued at once); startup (Ray workers, storage "
            f"check) {r['startup_s']:.1f} s"
        )
        h = r.get("end_to_next_dispatch_s") or {}
        if h:
            lines.append(
                f"Of a GPU's idle time between two trials, from one trial's end to the next one's dispatch (the "
                f"worker finishing the row, Ray returning it, the driver choosing): p50 {h['p50'] * 1000:.0f} ms, "
                f"p99 {h['p99'] * 1000:.0f} ms."
            )
    kinds = list(g["cpu"])
    lines.append("\nCPU, average cores busy over each run's wall time:\n")
    lines.append("| runner | " + " | ".join(kinds) + " |")
    lines.append("|---|" + "---|" * len(kinds))
    for name, r in runs:
        lines.append(f"| {name} | " + " | ".join(f"{r['cpu'][k]:.2f}" for k in kinds) + " |")
    c = out["child_cost"]
    demand = c["cpu_s"] * a["gpus"] / a["seconds"]
    lines.append(
        f"\nOne trial child costs {c['cpu_s'] * 1000:.0f} ms of CPU started cold (a new interpreter, "
        f"{c['wall_s'] * 1000:.0f} ms wall alone), {c.get('warm_cpu_s', 0) * 1000:.0f} ms forked from a warm "
        f"parent ({c.get('warm_wall_s', 0) * 1000:.0f} ms wall); cold, {a['gpus']} trials every {a['seconds']} s "
        f"would need {demand:.2f} CPU cores for that alone, of the {out['machine']['cpus']} this machine has."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--gpus", type=int, default=16)
    parser.add_argument(
        "--tune", default="default,reuse", help="Tune variants: default (reuse_actors=False), reuse, none"
    )
    parser.add_argument(
        "--sample-interval-ms",
        default="20,200",
        help="gpu-grid runs, one per value of the spec's sample_interval_ms (default: 20 (the spec default), then 200)",
    )
    parser.add_argument("--json", default=None, help="write every number here")
    args = parser.parse_args(argv)
    out = {"args": vars(args), "machine": machine(), "child_cost": child_cpu_cost()}
    print(f"machine: {out['machine']}\nchild cost: {out['child_cost']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        connect(None, num_gpus=args.gpus, num_cpus=os.cpu_count())
        try:
            out["grid"] = []
            for i, ms in enumerate(int(v) for v in args.sample_interval_ms.split(",")):
                out["grid"].append(run_grid(args.trials, args.seconds, args.gpus, os.path.join(tmp, f"results{i}"), ms))
                print(f"gpu-grid: {json.dumps(out['grid'][-1])}", flush=True)
            out["tune"] = []
            for variant in [v for v in args.tune.split(",") if v in ("default", "reuse")]:
                out["tune"].append(
                    run_tune(args.trials, args.seconds, variant == "reuse", os.path.join(tmp, f"tune-{variant}"))
                )
                print(f"tune: {json.dumps(out['tune'][-1])}", flush=True)
        finally:
            ray.shutdown()
    text = report(out)
    print("\n" + text)
    if args.json:
        Path(args.json).write_text(json.dumps({**out, "report": text}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
