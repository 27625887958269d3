"""A workload with no framework: for scheduler tests and benchmarks.

`seconds` of sleep (then, with `until_file`, until that file exists), optionally `hold_mib` of CPU
memory held throughout, and `fail` to end as an error, an OOM (a real MemoryError text) or a crash
(SIGABRT, without a result). A hidden memory boundary for tests of searches: `oom_below_fraction: f`
ends a trial whose `memory_fraction` is below f (or null: no cap means the whole card, which fits)
as an OOM, `oom_above_batch: n` one whose `batch_size` is above n. A simulated GPU memory that is
linear in the batch, so that a search's memory model is tested with exact answers:
`mem_per_item_mib: m` (and `mem_base_mib: b`) make the trial need b + m x batch_size MiB of its GPU
(a fake one's memory is --gpu-memory-mib), reported as its framework peak, and end as an OOM where
that is over the card's memory (x memory_fraction).
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
    gate = cfg.get("until_file")
    while gate and not os.path.exists(gate):
        time.sleep(0.1)
    fraction, floor = cfg.get("memory_fraction"), cfg.get("oom_below_fraction")
    if floor is not None and fraction is not None and fraction < floor:
        raise MemoryError(f"sleep workload: memory_fraction={fraction:g} is below oom_below_fraction={floor:g}")
    ceiling = cfg.get("oom_above_batch")
    if ceiling is not None and cfg.get("batch_size", 0) > ceiling:
        raise MemoryError(f"sleep workload: batch_size={cfg['batch_size']} is above oom_above_batch={ceiling}")
    simulated = _simulated_memory(cfg)
    if simulated is not None:
        need, limit = simulated
        from gridtrial import report

        report(framework_peak_mib=min(need, limit))
        if need > limit:
            raise MemoryError(f"CUDA out of memory: the sleep workload needs {need:g} MiB, {limit:g} MiB allowed")
    fail = cfg.get("fail", "none")
    if fail == "error":
        raise RuntimeError("sleep workload asked to fail (fail: error)")
    if fail == "oom":
        raise MemoryError("sleep workload asked to run out of memory (fail: oom)")
    if fail == "crash":
        os.kill(os.getpid(), signal.SIGABRT)
    return {"framework": "none", "data": "none", "epoch_times": [time.perf_counter() - t0], "import_s": 0.0}


def _simulated_memory(cfg: dict) -> tuple[float, float] | None:
    """(the MiB this trial needs, the MiB it may use) of a simulated GPU memory, or None."""
    per_item = cfg.get("mem_per_item_mib")
    if per_item is None:
        return None
    from gridtrial import gpu_memory_mib

    cards = gpu_memory_mib()
    if not cards:
        raise RuntimeError(
            "mem_per_item_mib simulates a GPU's memory: run the trial on a GPU (--num-gpus N --gpu-memory-mib M)"
        )
    fraction = cfg.get("memory_fraction")
    limit = cards[0] * (fraction if fraction is not None else 1.0)
    return cfg.get("mem_base_mib", 0.0) + per_item * cfg.get("batch_size", 1), limit


if __name__ == "__main__":
    tasks.main(run)
