"""Issue 25's benchmark: how often the nightly check cries wolf on unchanged code, and the smallest
slowdown it catches, by the new rule (a history of accepted runs, `noisy`, a confirming re-run) and
by the rule before it (one baseline run, 5% beyond the min-max range of its repeats), on the same runs.

    python benchmarks/bench_nightly.py OUT_DIR [--nights 22] [--slowdowns 5,10,20] [--slow-nights 3]
        [--spec specs/nightly.yaml] [--set KEY=VALUE ...] [--runner local] [--quick [--resnet]] [--confirm 1]

Needs keras and a backend in the interpreter that runs the trials (the slowdown is in the Keras
workloads); not ray (`--runner local`, the default) nor duckdb.

Collect: OUT_DIR/nights/NNN-base/ are runs of the spec as it is (`KERAS_SLOWDOWN_PCT=0`: nothing
added); a night NNN-slowP/ runs it with `KERAS_SLOWDOWN_PCT=P` in the trials' environment (the
Keras workloads then run P% more steps an epoch, rounded to whole steps: the rows' `data_note`
gives the share added), inserted after the base nights once the history is full, as a slower
commit would land. Each night is `grid run` in its own process (`--runner local`: no Ray needed).
Judge: every base night from the second on against the (up to 10) base nights before it: false
alarms; every slow night against each window of 10 consecutive base nights (before or after it):
catches. A flagged night is confirmed by a fresh re-run of the same code (one per night, reused by
its comparisons).
Everything lands under OUT_DIR (tar it whole); OUT_DIR/bench.json holds the figures and each verdict.
A run stopped half-way resumes: finished nights are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DONE = "night.json"


def grid_run(spec: str, results: Path, sets: list[str], runner: list[str], env: dict[str, str]) -> dict:
    """One night: `grid run` in a new process; its exit code, seconds and log."""
    results.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "grid", "run", spec, "--results", str(results), "--plain", *runner]
    for text in sets:
        argv += ["--set", text]
    for name, value in env.items():
        argv += ["--set", f"env.{name}={value}"]
    t0 = time.perf_counter()
    with open(results.parent / "run.log", "w") as log:
        code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO).returncode
    return {"exit": code, "seconds": round(time.perf_counter() - t0, 1)}


def plan(nights: int, slowdowns: list[float], slow_nights: int, history: int) -> list[tuple[str, float]]:
    """The nights in the order they run: base nights, and once `history` of them ran, the slow ones
    one after each base night (levels taken in turn), so both meet the same drift of the machine."""
    slow = [p for _ in range(slow_nights) for p in slowdowns]
    order: list[tuple[str, float]] = []
    for i in range(nights):
        order.append(("base", 0.0))
        if i + 1 >= history and slow:
            order.append(("slow", slow.pop(0)))
    order += [("slow", p) for p in slow]
    return order


# How the slowdown is injected (tasks/keras_common.py): nights of another kind are not mixed in.
INJECTION = "more steps an epoch"


def night_dir(out: Path, index: int, kind: str, pct: float) -> Path:
    return out / "nights" / (f"{index:03d}-base" if kind == "base" else f"{index:03d}-slow{pct:g}")


def collect(args: argparse.Namespace, runner: list[str]) -> list[dict]:
    done: list[dict] = []
    for index, (kind, pct) in enumerate(plan(args.nights, args.slowdowns, args.slow_nights, args.history)):
        folder = night_dir(args.out, index, kind, pct)
        marker = folder / DONE
        if marker.is_file():
            night = json.loads(marker.read_text())
            if night.get("injection") != INJECTION:
                sys.exit(
                    f"{folder} was collected with the slowdown as a per-step callback, which made every step of every "
                    f"night wait for the host; these nights add {INJECTION}: collect into a new OUT_DIR"
                )
            done.append(night)
            continue
        if args.judge_only:
            continue
        env = {"KERAS_SLOWDOWN_PCT": f"{pct:g}"}  # 0 on base nights: nothing added
        ran = grid_run(args.spec, folder / "results", args.set, runner, env)
        night = {
            "index": index,
            "kind": kind,
            "slowdown_pct": pct,
            "injection": INJECTION,
            "dir": str(folder.relative_to(args.out)),
            **ran,
        }
        marker.write_text(json.dumps(night) + "\n")
        print(f"night {index}: {kind} {pct:g}% -> exit {ran['exit']} in {ran['seconds']} s", flush=True)
        done.append(night)
    return done


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for every night, the confirmations and bench.json")
    p.add_argument("--spec", default="specs/nightly.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="grid run --set, every night")
    p.add_argument("--nights", type=int, default=22, help="base nights (default 22: 21 comparisons)")
    p.add_argument("--slowdowns", default="5,10,20", help="slowdowns injected, percent (default 5,10,20)")
    p.add_argument("--slow-nights", type=int, default=3, help="nights per slowdown (default 3)")
    p.add_argument("--history", type=int, default=10, help="accepted runs a verdict looks back on (default 10)")
    p.add_argument("--confirm", type=int, default=1, help="re-runs confirming a flagged night (default 1)")
    p.add_argument("--threshold", default="5%")
    p.add_argument("--metric", default="steady_epoch_s")
    p.add_argument("--runner", default="local", choices=("local", "ray"))
    p.add_argument(
        "--quick",
        action="store_true",
        help="a GPU box in ~7 minutes: 7 base nights (history 4), slowdowns 5,10,20 x 1 night, jax only, 65,536 "
        "images an epoch (an H100 took 0.25 s an epoch of 16,384: a steady window under a second); run again "
        "with more --nights: finished nights are kept",
    )
    p.add_argument(
        "--resnet",
        action="store_true",
        help="with --quick: the ResNet-50 workload (jax, batch 256, 32,768 images an epoch), whose steps keep a GPU "
        "busy; the tiny CNN's 2 ms steps on an H100 are bound by the host's dispatch, and its unchanged nights' "
        "medians spread over 30%% (0.80-1.06 s)",
    )
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--judge-only", action="store_true", help="judge the nights collected so far, run no new one")
    args = p.parse_args(argv)
    if args.quick:
        args.nights = 7 if args.nights == 22 else args.nights  # more --nights: the same plan, longer
        args.slowdowns, args.slow_nights, args.history = "5,10,20", 1, 4
        args.set = ["backend=[jax]", "images=65536", *args.set]
    if args.resnet:
        args.set = ["workload=keras_resnet50", "batch_size=256", "images=32768", *args.set]
    args.slowdowns = [float(x) for x in str(args.slowdowns).split(",") if x.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runner = ["--runner", args.runner]
    nights = collect(args, runner)
    if args.collect_only:
        return 0
    from nightly_judge import judge_all  # the verdicts need grid's reports (pyarrow, rich)

    result = judge_all(args, nights, runner)
    (args.out / "bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(result["table"])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
