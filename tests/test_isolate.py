"""The child process: own process group, timeout kills the whole group, signals recorded, RSS budget,
dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from grid.spec.workloads import PROJECT_ROOT, TRIAL_SITE
from grid.trial.isolate import run_child


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for_file(path, timeout=15.0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = Path(path).read_text() if os.path.exists(path) else ""
        if text.strip():
            return text
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def test_ok_exit_and_log(tmp_path):
    log = tmp_path / "log"
    out = run_child(
        [sys.executable, "-c", "print('hello from child')"],
        env=dict(os.environ),
        cwd=str(tmp_path),
        log_path=str(log),
        timeout_s=30,
    )
    assert out.exit_code == 0 and out.signal is None and not out.timed_out
    assert "hello from child" in log.read_text()
    assert out.peak_rss_mib > 0


def test_child_has_own_process_group(tmp_path):
    pids = tmp_path / "pids"
    code = f"import os; open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{os.getpgid(0)}} {{os.getsid(0)}}')"
    run_child(
        [sys.executable, "-c", code], env=dict(os.environ), cwd=None, log_path=str(tmp_path / "log"), timeout_s=30
    )
    pid, pgid, sid = map(int, pids.read_text().split())
    assert pid == pgid == sid != os.getpgid(0)


def test_timeout_kills_whole_group(tmp_path):
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $$ $! > {pids}; sleep 60"
    t0 = time.time()
    out = run_child(
        ["/bin/bash", "-c", script],
        env=dict(os.environ),
        cwd=None,
        log_path=str(tmp_path / "log"),
        timeout_s=2,
        grace_s=1,
    )
    assert out.timed_out and out.exit_code is None and out.signal in ("SIGTERM", "SIGKILL")
    assert time.time() - t0 < 10
    for pid in map(int, pids.read_text().split()):
        assert not _alive(pid), f"process {pid} of the group survived the timeout"
    assert "timeout_s=2 reached" in (tmp_path / "log").read_text()


def test_kill_minus_9_recorded(tmp_path):
    pidfile = tmp_path / "pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            out=run_child(
                [sys.executable, "-c", code],
                env=dict(os.environ),
                cwd=None,
                log_path=str(tmp_path / "log"),
                timeout_s=60,
            )
        )
    )
    thread.start()
    os.kill(int(_wait_for_file(pidfile)), signal.SIGKILL)
    thread.join(30)
    out = result["out"]
    assert out.signal == "SIGKILL" and out.exit_code is None and not out.timed_out


def test_memory_budget_ends_tree(tmp_path):
    code = (
        "import time; b = bytearray(400 * 1024 * 1024); [b.__setitem__(i, 1) for i in range(0, len(b), 4096)]; "
        "time.sleep(30)"
    )
    out = run_child(
        [sys.executable, "-c", code],
        env=dict(os.environ),
        cwd=None,
        log_path=str(tmp_path / "log"),
        timeout_s=60,
        memory_limit_mib=150,
    )
    assert out.over_budget and not out.timed_out
    assert out.peak_rss_mib > 150
    assert "over memory_limit_mib=150" in (tmp_path / "log").read_text()


@pytest.mark.parametrize("start", ["bootstrap", "setpriv", "shim"])
def test_child_dies_with_its_launcher(tmp_path, start):
    """A lost worker must not leave its trial running: the child is tied to the launching thread,
    by the trial's own bootstrap (a Python trial), by setpriv (any program), or by the Python shim
    where setpriv is missing. The first two start no second interpreter."""
    pidfile = tmp_path / "pid"
    code = (
        "import os, sys, time; open(sys.argv[1], 'w').write("
        "f'{os.getpid()} {os.path.basename(os.readlink(\"/proc/self/exe\"))} {len(sys.argv)}'); time.sleep(60)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TRIAL_SITE), str(PROJECT_ROOT)]))
    no_setpriv = "import grid.trial.isolate as i; i.shutil.which = lambda name: None;" if start == "shim" else ""
    launcher = (
        f"import os, sys; {no_setpriv} from grid.trial.isolate import run_child;"
        f"run_child([sys.executable, '-c', {code!r}, {str(pidfile)!r}], env={env!r}, cwd=None, "
        f"log_path={str(tmp_path / 'log')!r}, timeout_s=60, bootstrapped={start == 'bootstrap'})"
    )
    proc = subprocess.Popen([sys.executable, "-c", launcher])
    child, exe, _ = _wait_for_file(pidfile).split()
    assert exe.startswith("python")
    if start != "shim":  # one exec of the interpreter: the pid Popen got is the trial's own process
        assert psutil.Process(int(child)).ppid() == proc.pid
        assert "-S" not in psutil.Process(int(child)).cmdline()
    proc.kill()
    proc.wait()
    deadline = time.time() + 5
    while _alive(int(child)) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(int(child))


def test_guard_variables_reach_only_the_top_process(tmp_path):
    """The bootstrap pops the guard's variables: the trial's own children are not tied to the worker."""
    code = "import os, subprocess, sys; print(os.environ.get('GRID_PARENT_PID')); sys.stdout.flush(); " + (
        "subprocess.run([sys.executable, '-c', 'import os; print(os.environ.get(\"GRID_PARENT_PID\"))'])"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TRIAL_SITE), str(PROJECT_ROOT)]))
    out = run_child(
        [sys.executable, "-c", code], env=env, cwd=None, log_path=str(tmp_path / "log"), timeout_s=30, bootstrapped=True
    )
    assert out.exit_code == 0
    assert (tmp_path / "log").read_text().split() == ["None", "None"]


def test_timeout_of_a_child_that_obeys_sigterm_is_prompt(tmp_path):
    t0 = time.time()
    out = run_child(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env=dict(os.environ),
        cwd=None,
        log_path=str(tmp_path / "log"),
        timeout_s=0.5,
        grace_s=5,
    )
    assert out.timed_out and out.signal == "SIGTERM"
    assert time.time() - t0 < 3, "waited out the grace period although the child had ended"
