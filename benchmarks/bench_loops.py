"""A training loop's fixed overhead per trial, cold vs warm, split into gpu-grid's share and the
framework's.

    python benchmarks/bench_loops.py RESULTS [--json out.json]

Reads the sweeps of specs/loops-overhead-gpu.yaml and specs/loops-overhead-hf-gpu.yaml (make
bench-loops runs both on a GPU box) and prints, per sweep and start (cold: a new interpreter; warm,
first: forked from a bare parent, which learns what the script imports; warm: forked from a parent
that imported it), the medians of: the trial's wall time, its epochs, the fixed overhead (wall
minus epochs), what of it was importing frameworks, and gpu-grid's own share (launch: dispatch to
process start; boot: the bootstrap in the process; finish: the trial's end to its row) against the
framework's (the overhead less gpu-grid's share: imports, CUDA context, model and loop set-up, exit).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grid.results.store import ResultStore

SWEEPS = ("loops-overhead-lightning", "loops-overhead-huggingface")


def split(row: dict) -> dict | None:
    epochs = row.get("epoch_times") or []
    if row.get("status") != "ok" or not epochs or row.get("wall_s") is None:
        return None
    launch = (row["started_at"] - row["dispatched_at"]).total_seconds() if row.get("dispatched_at") else None
    boot, finish = row.get("boot_s"), row.get("finish_s")
    overhead = row["wall_s"] - sum(epochs)
    ours = sum(x for x in (launch, boot, finish) if x is not None)
    return {
        "wall_s": row["wall_s"],
        "epochs_s": sum(epochs),
        "overhead_s": overhead,
        "import_s": row.get("import_s") or 0.0,
        "launch_s": launch,
        "boot_s": boot,
        "finish_s": finish,
        "gpu_grid_s": ours,
        "framework_s": overhead - (boot or 0.0),  # the process's own time beyond its epochs, less the bootstrap
    }


def start_of(row: dict, first_warm: set[str]) -> str:
    if row.get("start") != "warm":
        return "cold"
    return "warm, first (bare parent)" if row["trial_id"] in first_warm else "warm (learned parent)"


def table(rows: list[dict]) -> tuple[str, list[dict]]:
    by_sweep: dict[str, list[dict]] = collections.defaultdict(list)
    for row in rows:
        by_sweep[row["sweep"]].append(row)
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for sweep, found in by_sweep.items():
        warm = sorted((r for r in found if r.get("start") == "warm"), key=lambda r: r["started_at"])
        first = {warm[0]["trial_id"]} if warm else set()
        for row in found:
            measured = split(row)
            if measured is not None:
                groups[(sweep, start_of(row, first), row.get("gpu_name") or "no GPU")].append(measured)
    keys = (
        "wall_s",
        "epochs_s",
        "overhead_s",
        "import_s",
        "launch_s",
        "boot_s",
        "finish_s",
        "gpu_grid_s",
        "framework_s",
    )
    lines = [
        "| sweep | start | trials | wall s | epochs s | fixed overhead s | import s | launch s | boot s "
        "| finish s | gpu-grid's share s | framework's s |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    out = []
    for (sweep, start, gpu), found in sorted(groups.items()):
        med = {k: statistics.median(v) if (v := [f[k] for f in found if f[k] is not None]) else None for k in keys}
        out.append({"sweep": sweep, "start": start, "gpu": gpu, "trials": len(found), **med})
        cells = ["-" if med[k] is None else f"{med[k]:.2f}" for k in keys]
        lines.append(f"| {sweep} | {start} | {len(found)} | " + " | ".join(cells) + " |")
    return "\n".join(lines), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--json")
    args = parser.parse_args()
    store = ResultStore(args.results)
    rows = [r for sweep in SWEEPS if sweep in store.sweeps() for r in store.latest(sweep).to_pylist()]
    if not rows:
        print(f"no rows of {', '.join(SWEEPS)} in {args.results}", file=sys.stderr)
        return 2
    text, data = table(rows)
    gpus = sorted({r.get("gpu_name") or "no GPU" for r in rows})
    print(f"{len(rows)} rows on {', '.join(gpus)}; medians per group\n")
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
