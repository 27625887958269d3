"""A workload with no framework: for scheduler tests and benchmarks.

`seconds` of sleep, optionally `hold_mib` of CPU memory held throughout, and `fail` to end as an
error, an OOM (a real MemoryError text) or a crash (SIGABRT, without a result).
"""

from __future__ import annotations

import os
import signal
import time

import tasks


def run(cfg: dict) -> dict:
    held = bytearray(cfg.get("hold_mib", 0) * 1024 * 1024)
    for i in range(0, len(held), 4096):  # touch every page so it counts in RSS
        held[i] = 1
    print(f"sleep: {cfg['seconds']} s, holding {cfg.get('hold_mib', 0)} MiB, pid {os.getpid()}", flush=True)
    t0 = time.perf_counter()
    time.sleep(cfg["seconds"])
    fail = cfg.get("fail", "none")
    if fail == "error":
        raise RuntimeError("sleep workload asked to fail (fail: error)")
    if fail == "oom":
        raise MemoryError("sleep workload asked to run out of memory (fail: oom)")
    if fail == "crash":
        os.kill(os.getpid(), signal.SIGABRT)
    return {"framework": "none", "data": "none", "epoch_times": [time.perf_counter() - t0], "import_s": 0.0}


if __name__ == "__main__":
    tasks.main(run)
