"""A warm parent: imports a framework once, without touching the GPU, and forks each trial from it.

    python -m gridtrial.zygote SOCKET MODULE [MODULE ...]

Started by a worker (grid/trial/warm.py) with the environment its trials share. It imports the
modules one by one and checks after each that no GPU runtime started (a fork of a process that
started CUDA fails in the child with "CUDA error: initialization error"): if one did, it says which
and exits, and the worker starts a parent that stops before that module, or starts trials cold.
Then it prints one JSON line ({"ready": ...}) and serves the socket: per connection one request
(the trial's argv, environment, folder and log), answered with {"pid": N} once the child runs and
{"exit": CODE} when it ends (negative: the signal). The forked child becomes the trial's process as
a fresh interpreter would: its own session, output to the log, the trial's environment, cgroup and
parent-death signal (guard.py), the trial bootstrap, then the script, module or function runs as
`__main__`. Standard library only: it runs in any trial interpreter.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

from gridtrial import ranks
from gridtrial.cudadriver import cuda_driver_started
from gridtrial.fork import finish, reap, run_target, send
from gridtrial.protocol import Env, Exit, StartedAs


def gpu_started(name: str) -> str | None:
    """Which GPU runtime is running in this process already (a fork would break it), if any."""
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch.cuda, "is_initialized", lambda: False)():
        return f"importing {name} initialised CUDA (torch.cuda.is_initialized())"
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is not None and getattr(bridge, "_backends", None):
        return f"importing {name} started a jax backend ({', '.join(bridge._backends)})"
    if cuda_driver_started():
        return f"importing {name} started the CUDA driver (cuInit)"
    return None


def warm_up(modules: list[str]) -> dict[str, Any]:
    """Import the modules in order; stop before one that starts the GPU or a thread (a fork would
    break either: the parent imports only those before it), skip one that fails to import."""
    t0 = time.perf_counter()
    imported, skipped = [], []
    threads = threading.active_count()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a trial imports it in its own way (a path, an extra): it does so itself
            skipped.append(f"{name} ({type(exc).__name__}: {exc})")
            continue
        unsafe = gpu_started(name)
        if unsafe is None and threading.active_count() > threads:
            unsafe = f"importing {name} started a thread"
        if unsafe:
            return {"ready": False, "unsafe": unsafe, "safe_modules": imported}
        imported.append(name)
    return {
        "ready": True,
        "imported": imported,
        "skipped": skipped,
        "loaded": sorted({name.partition(".")[0] for name in sys.modules}),  # every package it has, as a result
        "import_s": time.perf_counter() - t0,
        "threads": threading.active_count(),
        "os_threads": len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None,
    }


def _read_request(conn: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the worker closed the connection before its request ended")
        data += chunk
    return json.loads(data)


def serve(listener: socket.socket) -> dict[str, Any]:
    """Fork a child per request until the worker goes away; returns (in the child only) its request.
    Sleeps until a request or a child's end (SIGCHLD, through a wake-up pipe): no polling."""
    children: dict[int, socket.socket] = {}
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        ready, _, _ = select.select([listener, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        if listener in ready:
            conn, _ = listener.accept()
            try:
                request = _read_request(conn)
            except (OSError, ValueError) as exc:
                send(conn, {"error": f"{type(exc).__name__}: {exc}"})
                conn.close()
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.close(wake_r)
                os.close(wake_w)
                listener.close()
                for other in children.values():
                    other.close()
                conn.close()
                return request
            children[pid] = conn
            send(conn, {"pid": pid})
        reap(children)


def become_trial(request: dict[str, Any]) -> None:
    """In the forked child: turn into the trial's process, then run its target as `__main__`."""
    t0 = time.perf_counter()
    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    numpy = sys.modules.get("numpy")
    if numpy is not None:  # seeded once, in the parent: every trial would draw the same numbers
        numpy.random.seed()
    from gridtrial import guard

    guard.adopt()
    if os.environ.get(Env.TRIAL):
        from gridtrial import boot

        boot.start_or_exit(StartedAs.WARM_PARENT, since=t0)


def main(argv: list[str]) -> None:
    path, modules = argv[0], argv[1:]
    try:
        state = warm_up(modules)
    except BaseException as exc:
        state = {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
    if not state["ready"]:
        print(json.dumps(state), flush=True)
        sys.exit(Exit.WARM_UNSAFE)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    print(json.dumps(state), flush=True)
    gc.freeze()  # the imported modules' objects: the trials' collections skip them (and their pages stay shared)
    request = serve(listener)

    def trial() -> None:  # the trial's own process from here
        become_trial(request)
        if ranks.launcher(request["args"]):
            why = ranks.start_parent()  # torch's launcher: its ranks fork from a copy of this process
            if why:
                print(f"[gpu-grid] torch's launcher starts its ranks cold: {why}", file=sys.stderr, flush=True)
        run_target(request)

    finish(trial)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(Exit.ERROR)
