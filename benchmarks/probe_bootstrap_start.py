"""What the trial bootstrap adds to a cold trial process's start: `python -c pass` under it (GRID_TRIAL
set, tasks/site first on PYTHONPATH), against the same interpreter without it.

    python benchmarks/probe_bootstrap_start.py [--python PY] [--runs N] [--code CODE] SITE [SITE ...]

Each SITE is a tasks/site folder (this tree's, or another checkout's, e.g. one from `git archive`
of an older commit, to compare before and after a change); runs are interleaved so that a busy
machine slows every case alike. Prints the median and minimum wall and CPU (user + system) time
per start, and the bootstrap's share (the median minus the no-bootstrap median). `--code` is what
each process runs (default `pass`; `import dataclasses` stands for a process that imports a
framework, which imports dataclasses and inspect itself). Compile the folders first
(`python -m compileall -q SITE grid/protocol.py`): with PYTHONDONTWRITEBYTECODE set, a module
without its .pyc is compiled again in every process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sites", nargs="+")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--code", default="pass")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="gpu-grid-bootstrap-start-")
    trial = os.path.join(folder, "trial.json")
    with open(trial, "w") as f:
        json.dump({"trial_id": "t", "config": {}, "records_dir": os.path.join(folder, "records")}, f)
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRID_") and k != "PYTHONPATH"}
    cases = {"no bootstrap": base, **{site: {**base, "PYTHONPATH": site, "GRID_TRIAL": trial} for site in args.sites}}
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, env in cases.items():
            r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            subprocess.run([args.python, "-c", args.code], env=env, check=True)
            t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            wall[name].append(t1 - t0)
            cpu[name].append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    plain_wall, plain_cpu = statistics.median(wall["no bootstrap"]), statistics.median(cpu["no bootstrap"])
    print(f"{args.python} -c {args.code!r}, {args.runs} runs each (ms per start: median / min)")
    for name in cases:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(name)
        line = (
            f"  wall {w * 1e3:6.1f} / {min(wall[name]) * 1e3:6.1f}   cpu {c * 1e3:6.1f} / {min(cpu[name]) * 1e3:6.1f}"
        )
        if name != "no bootstrap":
            line += f"   bootstrap: +{(w - plain_wall) * 1e3:.1f} wall, +{(c - plain_cpu) * 1e3:.1f} cpu"
        print(line)


if __name__ == "__main__":
    main()
