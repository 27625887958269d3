"""An S3 outage during a sweep, as an operator meets it: a real S3 server (SeaweedFS on loopback,
tests/s3server.py) stopped once N rows are in and started again on the same port and data D seconds
later; what the driver did (exit status, a traceback or not), the rows by status, the logs in the
bucket; then the same sweep's driver killed with SIGKILL mid-run and run again at once: its exit
status and how long it took. Runs the checkout on PYTHONPATH.

    python benchmarks/bench_outage.py --down 20 --json outage.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import s3server  # noqa: E402

SCRIPT = "import os, sys, time; time.sleep(float(sys.argv[1])); print('trained', os.environ['GRID_BATCH_SIZE'])\n"


def grid(s3: s3server.S3Server, spec: Path, work: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "grid", "run", str(spec), "--results", s3.uri(), "--plain"]
    argv += ["--state-dir", str(work / "state"), "--runner", "local", "--num-gpus", "4"]
    env = {**os.environ, **s3.env}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def counts(s3: s3server.S3Server, sweep: str) -> dict[str, object]:
    os.environ.update(s3.env)
    from grid.results.store import ResultStore

    store = ResultStore(s3.uri())
    latest = store.latest(sweep).to_pylist()
    logs = [e for e in store.backend.entries(store.layout.sweep(sweep) + "/_logs") if e.is_file]
    return {"rows_by_status": dict(collections.Counter(r["status"] for r in latest)), "logs_in_bucket": len(logs)}


def rows_in(s3: s3server.S3Server, sweep: str) -> int:
    os.environ.update(s3.env)
    from grid.results.store import ResultStore

    return len(ResultStore(s3.uri()).files(sweep))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0, help="each trial's length")
    parser.add_argument("--after-rows", type=int, default=4, help="stop the server once this many rows are in")
    parser.add_argument("--down", type=float, default=20.0, help="seconds the server stays down")
    parser.add_argument("--json")
    args = parser.parse_args()
    figures: dict[str, object] = {"checkout": os.environ.get("PYTHONPATH", str(REPO))}
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp:
        work = Path(tmp)
        (work / "train.py").write_text(SCRIPT)
        spec = work / "s9.yaml"
        spec.write_text(
            yaml.safe_dump(
                {
                    "name": "s9",
                    "command": f"python train.py {args.seconds}",
                    "axes": {"batch_size": list(range(1, args.trials + 1))},
                }
            )
        )
        s3 = s3server.start(work / "s3")
        try:
            driver = grid(s3, spec, work)
            while rows_in(s3, "s9") < args.after_rows:
                time.sleep(0.2)
            s3.stop()
            time.sleep(args.down)
            s3.restart()
            output = driver.communicate()[0]
            figures["outage"] = {
                "exit": driver.returncode,
                "traceback": "Traceback" in output,
                **counts(s3, "s9"),
                "last_lines": output.strip().splitlines()[-3:],
            }
            print(json.dumps(figures["outage"], indent=2), flush=True)
            # a driver killed mid-sweep, and the same run at once
            crash = work / "crash.yaml"
            crash.write_text(spec.read_text().replace("name: s9", "name: crash"))
            driver = grid(s3, crash, work)
            while rows_in(s3, "crash") < args.after_rows:
                time.sleep(0.2)
            driver.send_signal(signal.SIGKILL)
            driver.wait()
            started = time.monotonic()
            again = grid(s3, crash, work)
            output = again.communicate()[0]
            figures["rerun_after_kill"] = {
                "exit": again.returncode,
                "seconds": round(time.monotonic() - started, 1),
                "refused": "being run by another driver" in output,
                **counts(s3, "crash"),
            }
            print(json.dumps(figures["rerun_after_kill"], indent=2), flush=True)
        finally:
            s3.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
