"""How a trial process that gpu-grid runs (a warm parent's child, or `python -m gridtrial`) ends:
as the interpreter would, without the interpreter's teardown.

A normal exit waits for the non-daemon threads, runs the exit handlers (the bootstrap's record,
logging, multiprocessing, jax's and torch's own), then tears the interpreter down: every module
and object freed one by one, then the libraries' C++ destructors. For a process that imported jax
or torch that teardown took 1.1-1.5 s on an H100 (benchmarks/probe_warm_start.py), all of it time
the trial holds its GPU and does nothing. Here the threads are joined and the handlers run as
usual, every file object still open is flushed, and the process ends with os._exit: the kernel
frees the memory, files and the GPU context.

The flush is needed either way: a script run warm (by runpy, in a forked child) that never closed
a file lost its buffered lines even with the normal exit, where `python train.py` would have
written them (tests/test_warm_start.py checks both exits).

What is skipped: `__del__` methods of objects still alive at exit, and C++ destructors. A script
that relies on them sets GRID_FULL_EXIT=1 in the trial's environment (the spec's `env:`): the
same steps, then the normal teardown. A script started cold (`warm_start: false`) runs as
`python train.py` and exits the normal way.
"""

from __future__ import annotations

import atexit
import gc
import io
import os
import sys
import threading
import traceback
from typing import NoReturn

from gridtrial.protocol import Env, Exit, knob

_FILES = (io.BufferedIOBase, io.TextIOBase)


def exit_code(exc: SystemExit) -> int:
    """The status `sys.exit(code)` gives: None is 0, a number itself, anything else printed and 1."""
    if exc.code is None:
        return Exit.OK
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return Exit.ERROR


def _join_threads() -> None:
    """What the interpreter does first at exit (every CPython has it): threading's own exit hooks
    (concurrent.futures's executors are told to stop there: joining their threads before that waits
    forever), then the non-daemon threads joined."""
    threading._shutdown()


def _flush_open_files() -> None:
    """Write out what file objects still buffer (teardown would, when it freed them). By type, not
    isinstance: the collector's list holds weak proxies too, and isinstance on a dead one raises."""
    for obj in gc.get_objects():
        try:
            if issubclass(type(obj), _FILES) and not obj.closed and obj.writable():
                obj.flush()
        except Exception:
            pass  # a broken pipe, a closed descriptor: teardown would have failed the same way


def leave(code: int) -> NoReturn:
    """End this process with `code` after its threads and exit handlers, skipping the teardown.
    A step that fails is reported and the next one still runs: the process always ends."""
    for step in (_join_threads, atexit._run_exitfuncs, _flush_open_files):
        try:
            step()  # the exit handlers run once: a full exit below does not run them again
        except BaseException:
            traceback.print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if knob(Env.FULL_EXIT) == "1":
        sys.exit(code)
    os._exit(code & 0xFF)
