"""Where a trial process's time goes: its main thread's Python stack sampled every few milliseconds.

Set `GRID_PROFILE` to a folder in a trial's environment (a spec's `env:`) and every Python process
of the trial writes two files there when it exits (gridtrial.boot starts and ends the sampler):

- `<trial id>-<pid>.folded`: one line per distinct stack, `outer;...;inner milliseconds`, the
  format flame graph tools read (flamegraph.pl, speedscope, inferno);
- `<trial id>-<pid>.timeline.json`: per 100 ms of the process's life, the stack it spent most of
  that window in, and when the process started and finished its exit handler (unix seconds), so
  the time after it (interpreter and library teardown) shows against the worker's end time.

A sample is weighted by the time since the previous one: a main thread holding the GIL in a long
C call delays the sampler, and the delay is credited to the stack found when it gets the GIL.
Standard library only; the sampler is a daemon thread that takes ~1 % of a core at 5 ms.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import defaultdict

from gridtrial.protocol import Env, knob

WINDOW_S = 0.1


def _stack(frame) -> str:
    names = []
    while frame is not None:
        code = frame.f_code
        names.append(f"{os.path.basename(code.co_filename)}:{code.co_name}")
        frame = frame.f_back
    return ";".join(reversed(names))


class Sampler(threading.Thread):
    def __init__(self, folder: str, name: str, interval_s: float = 0.005):
        super().__init__(name="gpu-grid-stack-sampler", daemon=True)
        self.folder, self.label, self.interval_s = folder, f"{name}-{os.getpid()}", interval_s
        self.started_at = time.time()
        self._t0 = time.perf_counter()
        self._main = threading.main_thread().ident
        self._stop = threading.Event()
        self.total: dict[str, float] = defaultdict(float)
        self.windows: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def run(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(self.interval_s):
            now = time.perf_counter()
            frame = sys._current_frames().get(self._main)
            stack = _stack(frame) if frame is not None else "(no main thread frame)"
            self.total[stack] += now - last
            self.windows[int((now - self._t0) / WINDOW_S)][stack] += now - last
            last = now

    def write(self) -> None:
        """Stop sampling and write both files (called once, from the exit handler)."""
        self._stop.set()
        os.makedirs(self.folder, exist_ok=True)
        base = os.path.join(self.folder, self.label)
        with open(base + ".folded", "w") as f:
            for stack, seconds in sorted(self.total.items(), key=lambda kv: -kv[1]):
                f.write(f"{stack} {max(1, round(seconds * 1000))}\n")
        timeline = {
            "started_at": self.started_at,
            "finished_at": time.time(),
            "window_s": WINDOW_S,
            "windows": [
                {"t": round(i * WINDOW_S, 3), "stack": max(w.items(), key=lambda kv: kv[1])[0]}
                for i, w in sorted(self.windows.items())
            ],
        }
        with open(base + ".timeline.json", "w") as f:
            json.dump(timeline, f)


def start(trial_id: str) -> Sampler | None:
    folder = knob(Env.PROFILE)
    if not folder:
        return None
    sampler = Sampler(folder, trial_id)
    sampler.start()
    return sampler
