"""Warm ranks for torch's launcher: a `torchrun` rank starts from a fork, not from a cold import.

torch's launcher (`python -m torch.distributed.run`) starts every rank as a fresh interpreter,
`python -u train.py ...`, which imports torch and Keras again: 8-10 s a rank, with the GPU held.
When the launcher itself started warm (torch imported, CUDA not started, one thread), its
bootstrap forks a rank parent first: a copy of the launcher at that moment, serving a Unix socket
named in GRID_RANK_PARENT. A rank's fresh interpreter, in its bootstrap, hands the rank parent
its arguments, environment, folder and standard streams (the descriptors themselves) and becomes
a relay: the rank parent forks the rank, which runs the script as `__main__` under a bootstrap of
its own (its record, the cap on its LOCAL_RANK device); the relay passes SIGTERM, SIGINT and
SIGHUP on and ends as the rank ends, so the launcher sees its rank as before. A relay that dies
(SIGKILL) takes its rank with it (the rank parent kills a rank whose connection drops); the rank
parent dies with the launcher. Where any of this is not available the rank starts cold. Standard
library only: it runs in any trial interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import select
import signal
import socket
import sys
import tempfile
import threading
from typing import Any, NoReturn

from gridtrial import guard
from gridtrial.fork import finish, reap, run_target, send
from gridtrial.protocol import RANK_PARENT_NAME, Env, Exit, StartedAs

NAME = RANK_PARENT_NAME  # the rank parent's process name: a trial's RSS leaves it out (grid/trial/measure.py)
LAUNCHERS = ("torch.distributed.run", "torch.distributed.launch")
_PR_SET_NAME = 15
_RELAYED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def launcher(args: list[str]) -> bool:
    """Whether a warm trial's arguments (after the interpreter) run torch's launcher."""
    return len(args) >= 2 and args[0] == "-m" and args[1] in LAUNCHERS


def why_not_fork() -> str | None:
    """Why this process cannot be the rank parent's image (a fork of it would break), if it cannot."""
    from gridtrial.cudadriver import cuda_driver_started

    if "torch" not in sys.modules:
        return "torch is not imported in the warm parent (the trial's backend is not torch)"
    if cuda_driver_started():
        return "CUDA started in the launcher"
    if threading.active_count() != 1:  # Python threads; the libraries' own pools fork as a warm parent's do
        return "the launcher runs threads"
    return None


def start_parent() -> str | None:
    """In a warm launcher, before it runs: fork the rank parent and name its socket in GRID_RANK_PARENT
    (the ranks inherit the launcher's environment). Returns why not, or None once it serves."""
    why = why_not_fork()
    if why:
        return why
    folder = tempfile.mkdtemp(prefix="gpu-grid-ranks-")
    path = os.path.join(folder, "ranks.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    launcher_pid = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    own = _own_name()
    _name(NAME)  # born with it: an idle copy of the launcher, its pages shared, not counted in the RSS
    pid = os.fork()
    if pid == 0:
        guard.die_with(launcher_pid)  # no PDEATHSIG (not Linux): _serve sees the launcher gone
        request = _serve(listener, launcher_pid, own)  # returns in a rank's process only
        _become_rank(request)
    _name(own)
    listener.close()
    os.environ[Env.RANK_PARENT] = path
    atexit.register(_end_parent, pid, folder)  # before the launcher ends: not left for the worker to find
    return None


def _end_parent(pid: int, folder: str) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(folder, "ranks.sock"))
        os.rmdir(folder)


def _own_name() -> str:
    try:
        with open("/proc/self/comm") as f:
            return f.read().strip()
    except OSError:
        return os.path.basename(sys.executable)[:15]


def _name(name: str) -> None:
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _serve(listener: socket.socket, launcher: int, rank_name: str) -> dict[str, Any]:
    """Fork a rank per connection; kill a rank whose relay went away; end with nothing to serve when
    the launcher dies (PDEATHSIG). Returns, in a forked rank only, its request (its streams dup'ed)."""
    ranks: dict[int, socket.socket] = {}  # a rank's pid: its relay's connection
    dropped: set[int] = set()  # ranks whose relay went away: being killed
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    for sig in _RELAYED:  # the launcher's process group gets these: its ranks are told by their relays
        signal.signal(sig, signal.SIG_IGN)
    while True:
        relays = {conn: pid for pid, conn in ranks.items() if pid not in dropped}
        ready, _, _ = select.select([listener, wake_r, *relays], [], [], 5.0)
        if os.getppid() != launcher:  # no PDEATHSIG here (not Linux): the launcher is gone
            for pid in ranks:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            os._exit(0)
        if wake_r in ready:
            os.read(wake_r, 4096)
        for conn in [c for c in ready if c in relays]:
            if not conn.recv(1, socket.MSG_PEEK):  # the relay died: so does its rank
                dropped.add(relays[conn])
                with contextlib.suppress(ProcessLookupError):
                    os.kill(relays[conn], signal.SIGKILL)
        if listener in ready:
            conn, _ = listener.accept()
            try:
                request, fds = _receive(conn)
            except (OSError, ValueError) as exc:
                send(conn, {"error": f"{type(exc).__name__}: {exc}"})
                conn.close()
            else:
                _name(rank_name)  # a rank is born with a process's usual name (the launcher's)
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    for fd in (wake_r, wake_w):
                        os.close(fd)
                    listener.close()
                    for other in ranks.values():
                        other.close()
                    conn.close()
                    for target, fd in enumerate(fds):
                        os.dup2(fd, target)
                        os.close(fd)
                    return request
                _name(NAME)
                for fd in fds:
                    os.close(fd)
                ranks[pid] = conn
                send(conn, {"pid": pid})
        reap(ranks)
        dropped &= set(ranks)


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
    while not data.endswith(b"\n"):
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the relay closed the connection before its request ended")
        data += chunk
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError(f"expected the relay's 3 standard streams, received {len(fds)} descriptors")
    return json.loads(data), fds


def _become_rank(request: dict[str, Any]) -> NoReturn:
    """In the forked rank: the relay's streams, folder and environment, a bootstrap of its own, then
    the script as `__main__`; it ends as a warm trial does."""
    from gridtrial import boot

    for sig in (*_RELAYED, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    guard.die_with(os.getppid())
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ.pop(Env.RANK_PARENT, None)  # the rank's own children start as they would
    if request.get("unbuffered"):
        _unbuffered()
    torch = sys.modules.get("torch")
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if torch is not None and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))  # torchrun sets it per rank; a cold rank reads it at import

    def rank() -> None:
        boot.start_in_fork(StartedAs.WARM_RANK)  # its record says so (grid/trial/collect.py counts them)
        run_target(request)

    finish(rank)


def _unbuffered() -> None:
    """`python -u`: the standard streams write through (torchrun passes -u to its ranks)."""
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        setattr(
            sys,
            name,
            io.TextIOWrapper(
                io.FileIO(fd, "w", closefd=False),
                encoding=getattr(old, "encoding", None),
                errors=getattr(old, "errors", None),
                write_through=True,
            ),
        )


# -- the relay: a rank's fresh interpreter


def relay_args() -> tuple[list[str], bool] | None:
    """The rank's arguments after the interpreter and whether it runs unbuffered, where a forked rank
    can run them: `python [-u] script.py ...` or `python [-u] -m module ...`; else None."""
    argv = list(getattr(sys, "orig_argv", []))[1:]
    unbuffered = False
    while argv and argv[0] == "-u":
        unbuffered = True
        argv.pop(0)
    if not argv or (argv[0].startswith("-") and argv[0] != "-m") or (argv[0] == "-m" and len(argv) < 2):
        return None
    return argv, unbuffered or bool(os.environ.get("PYTHONUNBUFFERED"))


def relay() -> None:
    """In a fresh interpreter that torch's launcher started as a rank, before its bootstrap: have the
    rank forked from the rank parent and end as it ends. Returns (the rank then starts cold) when it
    cannot: no rank parent, an argv a fork cannot run, a refused or broken connection."""
    path = os.environ.get(Env.RANK_PARENT)
    found = relay_args()
    if not path or found is None or "LOCAL_RANK" not in os.environ:
        return
    args, unbuffered = found
    env = dict(os.environ)
    request = {"args": args, "env": env, "cwd": os.getcwd(), "unbuffered": unbuffered}
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        socket.send_fds(conn, [(json.dumps(request) + "\n").encode()], [0, 1, 2])
        replies = conn.makefile("rb")
        reply = _line(replies)
    except (OSError, ValueError):
        conn.close()
        return
    if "pid" not in reply:
        print(f"[gpu-grid] rank starts cold: {reply.get('error')}", file=sys.stderr, flush=True)
        conn.close()
        return
    rank = int(reply["pid"])

    def tell(signum: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(rank, signum)

    for sig in _RELAYED:
        signal.signal(sig, tell)
    try:
        code = int(_line(replies).get("exit", Exit.RELAY_LOST))
    except (OSError, ValueError):
        code = Exit.RELAY_LOST  # the rank parent died (with the launcher): nothing left to wait for
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


def _line(replies: Any) -> dict[str, Any]:
    line = replies.readline()
    if not line.endswith(b"\n"):
        raise ConnectionError("the rank parent closed the connection")
    return json.loads(line)
