"""Warm trial starts: fork each trial from a parent that has imported its framework already.

A fresh interpreter per trial pays the framework's import every time (jax ~3-5 s, keras+torch
~14 s on an H100 box). Per worker, per interpreter, backend and shared environment, one parent
(tasks/site/gridtrial/zygote.py) imports keras and the backend once, without starting the GPU,
and forks each trial; the child takes the trial's environment (GPUs, backend, cap) before the
framework touches the GPU, so every isolation guarantee stays: its own process and session, the
timeout ends its group, NVML and RSS per trial, the cap applied in the trial, nothing shared
between trials but the imported code.

Any other Python trial (another backend, or none) forks from a bare parent, which imported only
gpu-grid's bootstrap: as safe as a new interpreter (no framework in it), and it spares the
interpreter's start (~40-50 ms of CPU a trial, which matters for many short trials). Each trial's
processes say which packages they imported (their records' `imported`): the parent of the same
script's next trials on this worker imports those first (`learn`), so a Lightning or Hugging Face
script, or any other, starts warm after its first trial; a package whose import starts the GPU or
a thread is left out (the parent stops before it), one that fails to import is skipped. A trial
starts cold instead (and its log says why) where it is not a Python trial, its command is not
`python script.py ...` or `python -m module ...`, `warm_start: false`, or its parent could not
be started. For torch, Keras's import would start CUDA (`torch.cuda.is_available()` at import): the
parent imports it with PYTORCH_NVML_BASED_CUDA_CHECK=1, and checks after every import that CUDA
did not start; if it did, the next parent stops before that module.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import queue
import select
import socket
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from grid.protocol import Env, Exit
from grid.trial.imports import script_imports

log = logging.getLogger("grid")

# What a parent imports per backend (in order; a parent stops before a module that starts the GPU),
# until a script's first trial on the worker says what it imports; any other backend, or none, a bare
# parent until then.
WARM_MODULES = {
    "jax": ["numpy", "jax", "jax.numpy", "keras"],
    "torch": ["numpy", "torch", "keras"],
}
BARE = ["gridtrial.boot", "gridtrial.runner"]
# Learned per script on this worker: the packages its first trial imported (tasks/site/gridtrial/boot.py
# keeps them in its record), imported by the parent of its later trials. Keyed by Plan.script.
_learned: dict[str, tuple[str, ...]] = {}
_learned_lock = threading.Lock()
_NEVER_PREIMPORTED = frozenset({"gridtrial", "sitecustomize", "tasks", "grid"})
# Variables that differ per trial (the rest of a trial's environment must equal its parent's). The
# GPUs do not: Keras on torch picks its default device at import, so a parent serves one GPU set
# (a pinned worker's own GPU, mostly).
_PER_TRIAL_PREFIXES = (Env.PREFIX,)
_READY_TIMEOUT_S = 300.0
_MAX_PARENTS = 4  # per worker process; the least recently used one is ended past that


def shared_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(_PER_TRIAL_PREFIXES)}


@dataclass(frozen=True)
class Plan:
    """How a trial could start warm: which parent (key) and the argv after the interpreter."""

    key: str
    interpreter: str
    backend: str
    modules: tuple[str, ...]
    env: dict[str, str]  # the parent's environment: the trial's, less what varies per trial
    args: list[str]
    script: str  # the parent's key without its modules: what learns which packages the script imports


def plan(
    argv: list[str], env: dict[str, str], config: dict[str, Any], bootstrapped: bool, cwd: str | None = None
) -> Plan | str:
    """The warm start of this trial, or why it starts cold. `cwd`: where a script's path starts."""
    backend = config.get("backend")
    if config.get("warm_start", True) is False:
        return "warm_start: false"
    if not bootstrapped:
        return "not a Python trial"
    args = argv[1:]
    if not args or (args[0] == "-m" and len(args) < 2) or (args[0].startswith("-") and args[0] != "-m"):
        return f"interpreter arguments {args[:1]} (warm starts run `python script.py ...` or `python -m module ...`)"
    parent_env = shared_env(env)
    target = args[:2] if args[0] == "-m" else args[:1]
    script = hashlib.sha256(json.dumps([argv[0], backend, target, sorted(parent_env.items())]).encode()).hexdigest()[
        :16
    ]
    with _learned_lock:
        learned = _learned.get(script, ())
    # what the script imported last time, once known; else what its text imports and its backend needs
    if learned:
        modules: tuple[str, ...] = learned
    else:
        read = script_imports(os.path.join(cwd or os.getcwd(), args[0])) if args[0] != "-m" else ()
        modules = (*BARE, *read) if read else tuple(WARM_MODULES.get(str(backend), BARE))
    if backend == "torch" or "torch" in modules:  # is_available() at an import must not start CUDA
        parent_env["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    digest = hashlib.sha256(json.dumps([argv[0], backend, modules, sorted(parent_env.items())]).encode()).hexdigest()
    return Plan(digest[:16], argv[0], str(backend), modules, parent_env, args, script)


def learn(plan: Plan, imported: list[str]) -> None:
    """What a trial of this script imported (top-level packages, not its own files): the parent of
    its next trials on this worker imports them before the fork (stopping before one that would
    start the GPU or a thread, as for any module)."""
    packages = tuple(dict.fromkeys(m for m in imported if m and m.partition(".")[0] not in _NEVER_PREIMPORTED))
    if not packages:
        return
    serving = _starter.parents.get(plan.key) if _starter is not None else None
    # the parent that served it has every one of them loaded already: it goes on serving the script
    # (no second parent to start); else the next parent imports them
    keep = serving is not None and set(packages) <= set(serving.state.get("loaded") or ())
    with _learned_lock:
        _learned[plan.script] = plan.modules if keep else (*BARE, *packages)


class WarmChild:
    """A forked trial process, as far as run_child needs: pid, poll, wait (Popen's interface)."""

    def __init__(self, pid: int, conn: socket.socket):
        self.pid, self.conn = pid, conn
        self.returncode: int | None = None
        self.peak_rss_mib: float | None = None  # the process's own peak, as its parent reaped it
        self._buffer = b""

    def _read(self, timeout: float | None) -> None:
        if self.returncode is not None:
            return
        ready, _, _ = select.select([self.conn], [], [], timeout)
        if not ready:
            return
        chunk = self.conn.recv(4096)
        if not chunk:  # the parent died: its pdeathsig took the child with it
            self.returncode = -9
            self.conn.close()
            return
        self.take(chunk)

    def take(self, data: bytes) -> None:
        """Bytes from the parent: the child's exit status, once its line is whole."""
        self._buffer += data
        if self._buffer.endswith(b"\n"):
            ended = json.loads(self._buffer.splitlines()[-1])
            self.returncode = int(ended["exit"])
            if ended.get("maxrss_kib") is not None:
                self.peak_rss_mib = ended["maxrss_kib"] / 1024
            self.conn.close()

    def poll(self) -> int | None:
        self._read(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired("warm trial", timeout or 0)
            self._read(left)
        return self.returncode


class Parent:
    """One warm parent process and its socket."""

    def __init__(self, plan: Plan, folder: str, modules: list[str]):
        self.plan, self.modules = plan, modules
        self.socket_path = os.path.join(folder, f"{plan.key}-{len(modules)}.sock")
        self.proc: subprocess.Popen | None = None
        self.state: dict[str, Any] = {}
        self.abandoned = False  # not wanted any more: ended as soon as it has started

    def start(self) -> None:
        env = {**self.plan.env, Env.PARENT_PID: str(os.getpid()), Env.CGROUP_PROCS: "-"}
        errors = self.socket_path[: -len(".sock")] + ".log"  # its import warnings: a file, never a full pipe
        with open(errors, "wb") as err:
            self.proc = subprocess.Popen(
                [self.plan.interpreter, "-m", "gridtrial.zygote", self.socket_path, *self.modules],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], _READY_TIMEOUT_S)
        line = self.proc.stdout.readline() if ready else b""
        try:
            self.state = json.loads(line)
        except ValueError:
            self.stop()
            with open(errors, "rb") as f:
                tail = f.read().decode(errors="replace")[-2000:].strip()
            self.state = {"ready": False, "error": f"no ready line ({tail or 'no output'})"}
            return
        if not self.state.get("ready"):
            self._collect_refusal()
        else:
            self.modules = list(self.state.get("imported") or self.modules)  # less those it skipped

    def _collect_refusal(self) -> None:
        """A parent that cannot serve says why in its line and exits Exit.WARM_UNSAFE: wait for it
        (no zombie left), and say so where it ended otherwise."""
        assert self.proc is not None
        try:
            code = self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.stop()
            return
        if code != Exit.WARM_UNSAFE:
            self.state["error"] = f"{self.state.get('error') or 'not ready'} (the warm parent exited {code})"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and bool(self.state.get("ready"))

    def describe(self) -> str:
        pid = self.proc.pid if self.proc else "-"
        imported = f"{', '.join(self.modules)} imported in {self.state.get('import_s', 0):.1f} s"
        return f"the warm parent, process {pid} ({imported})"

    def fork(self, args: list[str], env: dict[str, str], cwd: str, log_path: str, join_file: str) -> WarmChild:
        """Fork the trial: `args` after the interpreter, its whole environment, folder and log."""
        assert self.proc is not None
        guard = {Env.PARENT_PID: str(self.proc.pid), Env.CGROUP_PROCS: join_file}
        request = {"args": args, "env": {**env, **guard}, "cwd": cwd, "log": log_path}
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(self.socket_path)
        conn.sendall((json.dumps(request) + "\n").encode())
        reply = b""
        while b"\n" not in reply:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionError("the warm parent closed the connection")
            reply += chunk
        line, _, rest = reply.partition(b"\n")  # a child that ended at once: its exit may follow
        answer = json.loads(line)
        if "pid" not in answer:
            raise RuntimeError(answer.get("error", "the warm parent refused the trial"))
        child = WarmChild(int(answer["pid"]), conn)
        child.take(rest)
        return child

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            if self.proc.poll() is None:
                self.proc.kill()
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)


class Starter:
    """This process's warm parents, started by one long-lived thread (the parents' pdeathsig ties
    them to the thread that started them: a trial's thread may end, this one does not)."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="gpu-grid-warm-")
        self.parents: OrderedDict[str, Parent] = OrderedDict()
        self.unsafe: dict[str, str] = {}
        # parents started in the background for a script whose earlier parent serves meanwhile
        self.coming: dict[str, tuple[Parent, threading.Event]] = {}
        self.lock = threading.Lock()
        self.jobs: queue.Queue = queue.Queue()
        threading.Thread(target=self._starter, name="gpu-grid-warm-parents", daemon=True).start()
        atexit.register(self.stop)

    def _starter(self) -> None:
        while True:
            parent, done = self.jobs.get()
            try:
                parent.start()
            except Exception as exc:
                parent.state = {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
            done.set()
            if parent.abandoned:  # the sweep ended while it imported (stop)
                parent.stop()

    def _start(self, plan: Plan, modules: list[str]) -> tuple[Parent, threading.Event]:
        parent = Parent(plan, self.folder, modules)
        done = threading.Event()
        self.jobs.put((parent, done))
        return parent, done

    def _started(self, plan: Plan, modules: list[str]) -> Parent:
        parent, done = self._start(plan, modules)
        done.wait()
        return parent

    def _arrived(self, key: str) -> None:
        """A parent started in the background that is ready by now joins the others (one that did
        not start is not tried again: the script's earlier parent goes on serving)."""
        coming = self.coming.get(key)
        if coming is None or not coming[1].is_set():
            return
        parent = self.coming.pop(key)[0]
        if parent.alive():
            self._keep(key, parent)
        else:
            self.unsafe[key] = f"no warm parent: {parent.state.get('unsafe') or parent.state.get('error')}"

    def _keep(self, key: str, parent: Parent) -> None:
        self.parents[key] = parent
        while len(self.parents) > _MAX_PARENTS:
            self.parents.popitem(last=False)[1].stop()

    def _earlier(self, plan: Plan) -> Parent | None:
        """A live parent of the same script that imported less (before its first trial said what it
        imports): it serves while the plan's own parent starts, instead of the trial waiting for it."""
        for key in reversed(self.parents):
            other = self.parents[key]
            if other.plan.script == plan.script and other.alive():
                return other
        return None

    def parent(self, plan: Plan) -> tuple[Parent | None, str | None]:
        """A ready parent for the plan (started now if needed), or why there is none. Where the
        script's earlier parent is alive, it serves until the plan's own is ready (started in the
        background): a trial never waits out a second round of imports."""
        with self.lock:
            self._arrived(plan.key)
            found = self.parents.get(plan.key)
            if found is not None and found.alive():
                self.parents.move_to_end(plan.key)
                return found, None
            earlier = self._earlier(plan)
            if plan.key in self.unsafe:
                return (earlier, None) if earlier is not None else (None, self.unsafe[plan.key])
            if earlier is not None:
                if plan.key not in self.coming:
                    self.coming[plan.key] = self._start(plan, list(plan.modules))
                return earlier, None
            modules = list(plan.modules)
            while True:
                parent = self._started(plan, modules)
                if parent.alive():
                    break
                reason = parent.state.get("unsafe") or parent.state.get("error") or "the parent did not start"
                safe = parent.state.get("safe_modules")
                if not parent.state.get("unsafe") or not safe or safe == modules:
                    self.unsafe[plan.key] = f"no warm parent: {reason}"
                    return None, self.unsafe[plan.key]
                log.warning("[grid] warm parent for %s: %s; importing only %s", plan.backend, reason, ", ".join(safe))
                modules = safe
            self._keep(plan.key, parent)
            return parent, None

    def stop(self) -> None:
        with self.lock:
            for parent in self.parents.values():
                parent.stop()
            self.parents.clear()
            for parent, done in self.coming.values():  # one still importing is ended once it is up
                parent.abandoned = True
                if done.is_set():
                    parent.stop()
            self.coming.clear()


_starter: Starter | None = None
_starter_lock = threading.Lock()


def starter() -> Starter:
    global _starter
    with _starter_lock:
        if _starter is None:
            _starter = Starter()
        return _starter


def stop_all() -> None:
    """End this process's warm parents (a local sweep's end; a worker's parents die with it)."""
    if _starter is not None:
        _starter.stop()
