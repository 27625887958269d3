"""Sum a GRID_PROFILE folder's stack samples (tasks/site/gridtrial/stacks.py) into phases.

    python benchmarks/profile_phases.py FOLDER [--phase NAME=SUBSTRING ...]

Each `*.folded` file is one trial process; a sample belongs to the first phase whose substring
occurs in its stack (the defaults name the steps of a Keras trial: backend start, model build,
fit), and within a phase the details listed below are counted wherever they occur (the program
loads from the compilation cache, host-to-device copies, the garbage collector).
"""

from __future__ import annotations

import argparse
import glob
import json
import os

PHASES = {
    "backend start": "xla_bridge.py:backends",
    "model build": "build_model",
    "fit": "trainer.py:fit",
}
DETAILS = {
    "cache loads": "compilation_cache.py:get_executable_and_time",
    "host-to-device copies": "pxla.py:batched_device_put",
    "garbage collection": "_xla_gc_callback",
}


def summarise(path: str, phases: dict[str, str]) -> dict:
    seconds: dict[str, float] = dict.fromkeys([*phases, "other"], 0.0)
    details: dict[str, dict[str, float]] = {name: dict.fromkeys(DETAILS, 0.0) for name in seconds}
    with open(path) as f:
        for line in f:
            stack, ms = line.rsplit(" ", 1)
            phase = next((name for name, key in phases.items() if key in stack), "other")
            seconds[phase] += int(ms) / 1000
            for detail, key in DETAILS.items():
                if key in stack:
                    details[phase][detail] += int(ms) / 1000
    with open(path.removesuffix(".folded") + ".timeline.json") as f:
        timeline = json.load(f)
    return {
        "process": os.path.basename(path).removesuffix(".folded"),
        "sampled_s": sum(seconds.values()),
        "life_s": timeline["finished_at"] - timeline["started_at"],
        "phases": seconds,
        "details": details,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--phase", action="append", default=[], help="NAME=SUBSTRING (replaces the defaults)")
    args = parser.parse_args()
    phases = dict(p.split("=", 1) for p in args.phase) if args.phase else PHASES
    for path in sorted(glob.glob(os.path.join(args.folder, "*.folded"))):
        s = summarise(path, phases)
        print(f"{s['process']}: {s['life_s']:.2f} s from the bootstrap to the end of its exit handler")
        for name, sec in s["phases"].items():
            extra = ", ".join(f"{d} {v:.2f} s" for d, v in s["details"][name].items() if v >= 0.05)
            print(f"  {name:<14} {sec:6.2f} s" + (f"  (of which {extra})" if extra else ""))


if __name__ == "__main__":
    main()
