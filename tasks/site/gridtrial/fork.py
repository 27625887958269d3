"""What a warm parent (zygote.py) and the warm launcher's rank parent (ranks.py) share: telling the
other end of a child's connection about it (`send`, `reap`), and, in the forked child, running the
trial's target as `__main__` until it ends as a script would (`run_target`, `finish`). Standard
library only: it runs in any trial interpreter.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from gridtrial import leave
from gridtrial.protocol import Env, Exit, knob


def send(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        conn.sendall((json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the worker went away: its trial dies with us or was ended already


def reap(children: dict[int, socket.socket]) -> None:
    """Tell each ended child's connection its exit status (negative: the signal) and its peak RSS
    (a trial that ends before the worker's first sample still has one), and forget it."""
    while children:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        conn = children.pop(pid, None)
        if conn is not None:
            send(conn, {"exit": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss})
            conn.close()


# What the script left: its globals, its exception. Nothing of it is freed before the process ends
# (leave.py): freeing it there could deadlock, as a torch gloo process group's destructor did, joining
# a thread that waited for the GIL (a cold interpreter's finalization ends such threads instead).
_kept: list[Any] = []


def run_target(request: dict[str, Any]) -> None:
    """The argv after the interpreter: `-m module args...` or `script.py args...` (checked by the worker)."""
    import runpy

    args = request["args"]
    if args[0] == "-m":
        sys.argv = [args[1], *args[2:]]
        sys.path[0] = os.getcwd()
        _kept.append(runpy.run_module(args[1], run_name="__main__", alter_sys=True))
    else:
        script = os.path.abspath(args[0])
        sys.argv = list(args)
        sys.path[0] = os.path.dirname(script)
        _kept.append(runpy.run_path(script, run_name="__main__"))


def finish(run: Callable[[], None]) -> NoReturn:
    """Run a trial process's work, then end as a script would, exit handlers included, without the
    interpreter's teardown (leave.py), keeping what the script left until then."""
    code = Exit.OK
    try:
        run()
    except SystemExit as exc:
        _kept.append(exc)
        code = leave.exit_code(exc)
    except BaseException as exc:
        _kept.append(exc)
        sys.excepthook(type(exc), exc, exc.__traceback__)
        code = Exit.ERROR
    if knob(Env.FULL_EXIT) == "1":
        _kept.clear()  # a full exit frees the script's objects as before (their __del__ methods run)
    leave.leave(code)
