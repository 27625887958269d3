"""Issue 26's benchmark, on a GPU box, in one run: the largest batch that fits a GPT-2-medium-sized LM
(the Lightning example at --size medium, sequence 1024, AdamW, bf16 autocast), found by Lightning's
own BatchSizeFinder and by gpu-grid's search; each answer re-run in a fresh process; and, where
Keras is installed, the smallest memory_fraction of the ResNet-50 workload with its probes packed vs
one at a time, and 8 trials of the Keras example packed vs one at a time.

    python benchmarks/bench_search.py OUT_DIR [--high 64] [--parts lightning,gpu-grid,resnet,keras]

Writes OUT_DIR/search.json and prints a markdown table: finder, answer, seconds to answer, the answer
re-run in a fresh process, and for gpu-grid its probes and the boundary its model predicted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from grid.reports.searches import search_results  # noqa: E402
from grid.results.store import ResultStore  # noqa: E402

LM = ["--size", "medium", "--seq", "1024", "--precision", "bf16-mixed"]


def timed(argv: list[str], log: Path, timeout: float = 300) -> tuple[int, float]:
    t0 = time.perf_counter()
    with open(log, "w") as out:
        try:
            code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.perf_counter() - t0


def fresh_run(batch: int, out: Path, name: str) -> str:
    """The answer trained for real in a new process: one epoch of 4 batches."""
    argv = [sys.executable, "examples/lightning/train.py", "--batch-size", str(batch), *LM]
    checkpoints = out / f"{name}-ckpt"  # the example saves its model and AdamW state: ~4 GB, not kept
    argv += ["--epochs", "1", "--samples", str(4 * batch), "--out", str(checkpoints)]
    code, _ = timed(argv, out / f"{name}-fresh.log", timeout=90)
    shutil.rmtree(checkpoints, ignore_errors=True)
    text = (out / f"{name}-fresh.log").read_text()
    return "trains" if code == 0 else "out of memory" if "out of memory" in text.lower() else f"failed ({code})"


def run_spec(out: Path, spec: dict, timeout: float) -> tuple[int, float, list[dict]]:
    """`grid run` of a spec (written to OUT/<name>.yaml) on one GPU into OUT/results: its exit code,
    seconds, and the latest attempt of each of its trials."""
    name = spec["name"]
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    results = out / "results"
    argv = [sys.executable, "-m", "grid", "run", str(path), "--results", str(results), "--runner", "local"]
    code, seconds = timed([*argv, "--plain", "--num-gpus", "1"], out / f"{name}.log", timeout=timeout)
    return code, seconds, ResultStore(str(results)).latest(name).to_pylist()


def lightning(out: Path, fresh: bool) -> dict:
    code, seconds = timed([sys.executable, "benchmarks/lightning_finder.py", *LM], out / "lightning-finder.log", 120)
    lines = [
        json.loads(line) for line in (out / "lightning-finder.log").read_text().splitlines() if line.startswith("{")
    ]
    if code != 0 or not lines:
        return {"finder": "lightning binsearch", "error": f"exit {code}", "wall_s": seconds}
    found = lines[-1]
    rerun = fresh_run(int(found["answer"]), out, "lightning") if fresh else "not run (--no-fresh)"
    return {**found, "wall_s": seconds, "fresh": rerun}


def gpu_grid(out: Path, high: int) -> dict:
    spec = {
        "name": "lm-search",
        "workdir": str(REPO / "examples" / "lightning"),
        "command": "python train.py --batch-size {batch_size} "
        + " ".join(LM)
        + " --epochs 1 --samples 256 --out {trial_dir}",
        "params": {"backend": "torch"},
        "search": {"largest": "batch_size", "low": 1, "high": high, "tolerance": 1, "confirm": 1},
        "timeout_s": 300,
    }
    code, seconds, rows = run_spec(out, spec, timeout=200)
    (result,) = search_results(rows, []) or [None]
    if result is None:
        return {"finder": "gpu-grid search", "error": f"exit {code}", "wall_s": seconds}
    return {
        "finder": "gpu-grid search",
        "answer": result.last_ok,
        "first_fail": result.first_fail,
        "seconds": seconds,
        "probes": result.probes,
        "predicted": result.predicted,
        "fresh": "trains (its confirmation)" if result.confirmed else "not confirmed",
        "timeline": timeline(rows),
    }


TIMELINE = ("search_role", "search_step", "status", "start", "compile", "import_s", "first_epoch_s", "wall_s")
TIMELINE += ("boot_s", "finish_s", "gpu_mem_peak_mib", "framework_peak_mib", "notes")


def timeline(rows: list[dict]) -> list[dict]:
    """Where a sweep's seconds went: each trial's value, outcome and phases, and when it was handed
    out, started and ended (seconds after the first hand-out)."""
    rows = sorted(rows, key=lambda r: (r.get("dispatched_at") is None, r.get("dispatched_at")))
    stamps = [r["dispatched_at"] for r in rows if r.get("dispatched_at") is not None]
    t0 = min(stamps) if stamps else None
    out = []
    for r in rows:
        axis = r.get("search_axis")
        item = {"value": json.loads(r["config_json"]).get(axis) if axis and r.get("config_json") else None}
        item.update({k: r.get(k) for k in TIMELINE if k in r})
        for k in ("dispatched_at", "started_at", "ended_at"):
            if t0 is not None and r.get(k) is not None:
                item[k.replace("_at", "_after_s")] = round((r[k] - t0).total_seconds(), 2)
        out.append(item)
    return out


def resnet_fraction_search(out: Path) -> list[dict]:
    """The smallest memory_fraction of the ResNet-50 workload (specs/oom-search-gpu.yaml: jax and
    torch x batch 32 and 128, four searches), its probes sharing the GPU vs one at a time. Each
    round has a probe of every search going on: what sharing can run at once (a single search
    bisects one probe a round, and packed and exclusive then took the same time on an H100: 140.6
    vs 138.4 s). Each sweep has its own name, so its own compile cache: both start cold."""
    made = []
    for name, share in (("resnet-search-packed", True), ("resnet-search-exclusive", False)):
        spec = yaml.safe_load((REPO / "specs" / "oom-search-gpu.yaml").read_text())
        spec.pop("env", None)  # gpu-grid's own compile cache, per sweep
        spec.update(name=name)
        spec["search"]["share_probes"] = share
        code, seconds, rows = run_spec(out, spec, timeout=300)
        results = search_results(rows, list(spec.get("axes", {})))
        made.append(
            {
                "sweep": name,
                "exit": code,
                "seconds": seconds,
                "answers": [
                    {
                        "search": r.label,
                        "answer": r.last_ok,
                        "first_fail": r.first_fail,
                        "probes": r.probes,
                        "confirmed": r.confirmed,
                    }
                    for r in results
                ],
                "probes": sum(r.probes for r in results),
                "probe_seconds": round(sum(r["wall_s"] or 0 for r in rows if r.get("search_role") == "probe"), 1),
                "timeline": timeline(rows),
            }
        )
    return made


def keras_packing(out: Path) -> list[dict]:
    """8 trials of the unmodified Keras example (jax, fraction 0.02): packed vs one at a time."""
    made = []
    for name, exclusive in (("keras-packed", False), ("keras-exclusive", True)):
        spec = yaml.safe_load((REPO / "examples" / "keras" / "grid.yaml").read_text())
        spec.update(name=name, exclusive=exclusive, repeats=8, workdir=str(REPO / "examples" / "keras"))
        spec["axes"] = {"backend": ["jax"], "memory_fraction": [0.02], "batch_size": [64]}
        spec.setdefault("params", {}).pop("backend", None)
        code, seconds, rows = run_spec(out, spec, timeout=90)
        made.append(
            {
                "sweep": name,
                "exit": code,
                "seconds": seconds,
                "ok": sum(r["status"] == "ok" for r in rows),
                "compile": sorted({str(r.get("compile")) for r in rows}),
            }
        )
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--high", type=int, default=64)
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"which parts to run, in this order (default: all of {','.join(PARTS)}; the Keras ones need keras)",
    )
    parser.add_argument("--no-fresh", action="store_true", help="do not re-run Lightning's answer in a new process")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: received {unknown}, expected some of {list(PARTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    found: dict = {"packing": [], "resnet": []}
    for part in parts:
        if part == "lightning":
            found["lightning"] = lightning(out, fresh=not args.no_fresh)
        elif part == "gpu-grid":
            found["gpu_grid"] = gpu_grid(out, args.high)
        elif part in ("resnet", "keras") and not has_keras():
            found[f"{part}_skipped"] = "keras is not installed"
        elif part == "resnet":
            found["resnet"] = resnet_fraction_search(out)
        elif part == "keras":
            found["packing"] = keras_packing(out)
        # after each part: a run cut short keeps what it measured
        (out / "search.json").write_text(json.dumps(found, indent=2, default=str))
    print("| finder | answer | seconds to answer | the answer re-run in a fresh process | probes | predicted |")
    print("|---|---|---|---|---|---|")
    for key in ("lightning", "gpu_grid"):
        f = found.get(key)
        if f:
            print(
                f"| {f.get('finder')} | {f.get('answer')} | {f.get('seconds', float('nan')):.1f} | {f.get('fresh')} "
                f"| {f.get('probes', '-')} | {f.get('predicted', '-')} |"
            )
    for r in found["resnet"]:
        answers = "; ".join(f"{a['answer']} ({a['first_fail']} oom)" for a in r["answers"])
        confirmed = sum(bool(a["confirmed"]) for a in r["answers"])
        print(
            f"| {r['sweep']} | {answers} | {r['seconds']:.1f} | {confirmed} of {len(r['answers'])} confirmed "
            f"| {r['probes']} ({r['probe_seconds']} s of probes) | |"
        )
    for p in found["packing"]:
        print(f"| {p['sweep']} | {p['ok']} ok | {p['seconds']:.1f} | compile {', '.join(p['compile'])} | | |")
    return 0


PARTS = ("lightning", "gpu-grid", "resnet", "keras")


def has_keras() -> bool:
    try:
        import keras  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
