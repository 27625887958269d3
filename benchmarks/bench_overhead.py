"""The fixed overhead of a trial: what it holds its GPU for beyond its steady-state work.

    python benchmarks/bench_overhead.py RESULTS [--sweep overhead-gpu] [--json out.json]

Reads the rows of a sweep like specs/overhead-gpu.yaml (run it on a GPU first) and prints, per
backend, start (cold: a new interpreter, warm: forked from a warm parent) and compile (cache off,
cold or cached; none where nothing compiled through it), the GPU-held seconds (the trial's
start to end on its worker), the steady-epoch seconds (epochs x the steady epoch), their
difference (the fixed overhead), and where it went: framework import, the first epoch's excess
over a steady one (compilation, autotuning), and the rest (interpreter start, model build, exit).
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


def overhead(row: dict) -> dict | None:
    epochs = row.get("epoch_times") or []
    steady = row.get("steady_epoch_s")
    if row.get("status") != "ok" or not epochs or steady is None:
        return None
    held = (row["ended_at"] - row["started_at"]).total_seconds()
    first_excess = epochs[0] - steady
    imports = row.get("import_s") or 0.0
    return {
        "held_s": held,
        "steady_s": steady * len(epochs),
        "overhead_s": held - steady * len(epochs),
        "import_s": imports,
        "first_epoch_excess_s": first_excess,
        "rest_s": held - sum(epochs) - imports,
        "gpu_util_pct": row.get("gpu_util_pct"),
    }


def table(rows: list[dict]) -> tuple[str, list[dict]]:
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for row in rows:
        found = overhead(row)
        if found is not None:
            key = (row.get("backend"), row.get("start") or "cold", row.get("compile") or "none", row.get("gpu_name"))
            groups[key].append(found)
    lines = [
        "| backend | start | compile | trials | GPU-held s | steady-epoch s | fixed overhead s | import s "
        "| first-epoch excess s | rest s | GPU util % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    out = []
    for (backend, start, compiled, gpu), found in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        keys = [k for k in found[0] if found[0][k] is not None]
        med = {k: statistics.median(f[k] for f in found if f[k] is not None) for k in keys}
        out.append({"backend": backend, "start": start, "compile": compiled, "gpu": gpu, "trials": len(found), **med})
        cells = [f"{med.get(k, float('nan')):.1f}" for k in ("held_s", "steady_s", "overhead_s", "import_s")]
        cells += [f"{med.get(k, float('nan')):.1f}" for k in ("first_epoch_excess_s", "rest_s", "gpu_util_pct")]
        lines.append(f"| {backend} | {start} | {compiled} | {len(found)} | " + " | ".join(cells) + " |")
    return "\n".join(lines), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--sweep", default="overhead-gpu")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = ResultStore(args.results).latest(args.sweep).to_pylist()
    if not rows:
        print(f"no rows of sweep {args.sweep!r} in {args.results}", file=sys.stderr)
        return 2
    text, data = table(rows)
    gpus = sorted({r.get("gpu_name") or "no GPU" for r in rows})
    print(f"sweep {args.sweep}: {len(rows)} rows on {', '.join(gpus)}; medians per group\n")
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
