"""Warm trial starts: trials forked from a parent that imported the framework keep every isolation
guarantee (own process and session, the trial's environment and cap, timeout ends the group,
nothing shared between trials, nothing outliving a lost worker), and the row says how each started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from grid.results.store import ResultStore
from grid.spec.parse import load_spec
from grid.spec.workloads import PROJECT_ROOT, TRIAL_SITE
from grid.sweep import RunOptions, run_sweep
from grid.trial import warm
from grid.trial.isolate import run_child

TRAIN = textwrap.dedent(
    """
    import json, os, sys
    import keras

    def run(config):
        # state another trial would see if trials shared a process
        seen = getattr(keras, "_touched_by_a_trial", None)
        keras._touched_by_a_trial = os.environ["GRID_TRIAL_ID"]
        if config.get("sleep"):
            import time
            open(config["pidfile"], "w").write(str(os.getpid()))
            time.sleep(config["sleep"])
        return {
            "saw_other_trial": 1.0 if seen else 0.0,
            "numpy_draw": float(__import__("numpy").random.rand()),
            "python_draw": __import__("random").random(),
            "own_session": 1.0 if os.getsid(0) == os.getpid() == os.getpgid(0) else 0.0,
            "env_is_mine": float(json.load(open(os.environ["GRID_TRIAL"]))["trial_id"] == os.environ["GRID_TRIAL_ID"]),
            "mem_fraction_env": float(
                os.environ.get("XLA_CLIENT_MEM_FRACTION") or os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION") or 0
            ),
        }

    if __name__ == "__main__":
        print(f"script argv={sys.argv[1:]} main={__name__}")
        print(f"score: {len(sys.argv)}")
    """
)


def _sweep(tmp_path, name: str, **spec) -> list[dict]:
    (tmp_path / "train_mod.py").write_text(TRAIN)
    spec_file = tmp_path / f"{name}.yaml"
    spec_file.write_text(json.dumps({"name": name, "timeout_s": 60, **spec}))
    parsed = load_spec(str(spec_file))
    opts = RunOptions(results=str(tmp_path / "results"), runner="local", num_gpus=1, live=False)
    run_sweep(parsed, opts)
    rows = ResultStore(str(tmp_path / "results")).latest(name).to_pylist()
    return sorted(rows, key=lambda r: r["started_at"])


@pytest.mark.slow
def test_warm_trials_are_isolated_from_each_other(tmp_path):
    rows = _sweep(
        tmp_path,
        "warm-fn",
        function="train_mod:run",
        axes={"backend": ["jax"], "memory_fraction": [0.3, 0.5]},
    )
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error_message"] for r in rows]
    assert [r["start"] for r in rows] == ["warm", "warm"]
    for row in rows:
        assert row["saw_other_trial"] == 0.0 and row["own_session"] == 1.0 and row["env_is_mine"] == 1.0
        assert row["mem_fraction_env"] == row["memory_fraction"]  # the trial's own cap, set in the child
        assert row["import_s"] == 0.0  # the parent imported jax and keras
    # numpy's and Python's global generators are reseeded in each child, as in a new interpreter
    assert rows[0]["numpy_draw"] != rows[1]["numpy_draw"] and rows[0]["python_draw"] != rows[1]["python_draw"]
    log = Path(rows[0]["log_path"]).read_text()
    assert "warm start from the warm parent, process " in log


@pytest.mark.slow
def test_a_script_runs_warm_as_main_with_its_argv(tmp_path):
    rows = _sweep(
        tmp_path,
        "warm-script",
        command="python train_mod.py --x {x}",
        axes={"backend": ["jax"], "x": [1]},
        metrics={"score": "score: ([0-9]+)"},
    )
    assert rows[0]["status"] == "ok" and rows[0]["start"] == "warm"
    assert rows[0]["score"] == 3
    log = Path(rows[0]["log_path"]).read_text()
    assert "script argv=['--x', '1'] main=__main__" in log


@pytest.mark.slow
def test_timeout_ends_a_warm_trial(tmp_path):
    pidfile = tmp_path / "pid"
    rows = _sweep(
        tmp_path,
        "warm-timeout",
        function="train_mod:run",
        params={"backend": "jax", "sleep": 60, "pidfile": str(pidfile)},
        timeout_s=3,
    )
    assert rows[0]["status"] == "timeout" and rows[0]["start"] == "warm"
    assert (
        not psutil.pid_exists(int(pidfile.read_text())) or psutil.Process(int(pidfile.read_text())).status() == "zombie"
    )


def test_cold_where_forking_is_not_known_safe():
    env = {"PATH": "/bin", "GRID_TRIAL_ID": "t"}
    bare = warm.plan(["python", "x.py"], env, {"backend": "tensorflow"}, True)
    assert isinstance(bare, warm.Plan) and bare.modules == tuple(warm.BARE)  # no framework in the parent
    assert "interpreter arguments" in warm.plan(["python", "-c", "1"], env, {"backend": "jax"}, True)
    assert warm.plan(["python", "x.py"], env, {"backend": "jax", "warm_start": False}, True) == "warm_start: false"
    assert warm.plan(["bash", "x.sh"], env, {"backend": "jax"}, False) == "not a Python trial"
    one = warm.plan(["python", "x.py"], env, {"backend": "jax"}, True)
    other = warm.plan(["python", "y.py"], {**env, "GRID_TRIAL_ID": "u"}, {"backend": "jax"}, True)
    assert isinstance(one, warm.Plan) and isinstance(other, warm.Plan)
    assert one.key == other.key and "GRID_TRIAL_ID" not in one.env  # per-trial variables do not split parents
    assert warm.plan(["python", "x.py"], {**env, "JAX_X": "1"}, {"backend": "jax"}, True).key != one.key


STARTS_GPU_RUNTIME = {
    "jax_backend": ("import jax\njax.devices()\n", "started a jax backend (cpu"),
    "cuinit": ("import ctypes\nassert ctypes.CDLL('libcuda.so.1').cuInit(0) == 0\n", "started the CUDA driver"),
}


@pytest.mark.parametrize("runtime", ["jax_backend", pytest.param("cuinit", marks=pytest.mark.gpu)])
def test_a_parent_stops_before_a_module_that_starts_a_gpu_runtime(tmp_path, runtime, caplog):
    """A fork of a process that started CUDA (or a jax backend) fails in the child: the parent says
    which module did it, and the worker's next parent imports only the modules before it."""
    source, unsafe = STARTS_GPU_RUNTIME[runtime]
    (tmp_path / f"starts_{runtime}.py").write_text(source)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": os.pathsep.join([str(TRIAL_SITE), str(tmp_path)]),
        "JAX_PLATFORMS": "cpu" if runtime == "jax_backend" else "",
    }
    plan = warm.Plan("t" + runtime, sys.executable, "jax", ("numpy", "jax", f"starts_{runtime}"), env, ["x.py"], "s")
    starter = warm.Starter()
    try:
        parent, why = starter.parent(plan)
        assert why is None and parent is not None and parent.alive()
        assert parent.modules == ["numpy", "jax"], parent.state
        assert parent.state["imported"] == ["numpy", "jax"]
        assert f"importing starts_{runtime} {unsafe}" in caplog.text
    finally:
        starter.stop()


@pytest.mark.slow
def test_warm_parent_and_its_trial_die_with_a_lost_worker(tmp_path):
    """The worker dies (SIGKILL): its warm parent (tied to the worker's starter thread) and the
    trial (tied to the parent) end with it."""
    pidfile = tmp_path / "pid"
    code = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
    (tmp_path / "t.py").write_text(code)
    launcher = textwrap.dedent(
        f"""
        import os, sys
        from grid.spec.workloads import PROJECT_ROOT, TRIAL_SITE
        from grid.trial import warm
        from grid.trial.isolate import run_child
        path = os.pathsep.join([str(TRIAL_SITE), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, PYTHONPATH=path, KERAS_BACKEND="jax")
        argv = [sys.executable, {str(tmp_path / "t.py")!r}, {str(pidfile)!r}]
        plan = warm.plan(argv, env, {{"backend": "jax"}}, True)
        parent, why = warm.starter().parent(plan)
        assert parent is not None, why
        print(parent.proc.pid, flush=True)
        log = {str(tmp_path / "log")!r}
        run_child(argv, env=env, cwd=None, log_path=log, timeout_s=60, bootstrapped=True, warm=parent)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True)
    parent_pid = int(proc.stdout.readline())
    deadline = time.time() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert psutil.Process(child).ppid() == parent_pid
    proc.kill()
    proc.wait()
    deadline = time.time() + 5
    while (psutil.pid_exists(child) or psutil.pid_exists(parent_pid)) and time.time() < deadline:
        time.sleep(0.05)
    for pid in (child, parent_pid):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_many_quick_warm_trials_each_report_their_exit(tmp_path):
    """Children that end at once (their exit can reach the worker with their pid) and exit codes
    other than 0, forked one after another from one bare parent."""
    (tmp_path / "quick.py").write_text("import sys; sys.exit(int(sys.argv[1]))")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(TRIAL_SITE), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    starter = warm.Starter()
    try:
        for i in range(30):
            argv = [sys.executable, str(tmp_path / "quick.py"), str(i % 3)]
            plan = warm.plan(argv, env, {}, True)
            parent, why = starter.parent(plan)
            assert parent is not None, why
            out = run_child(argv, env=env, cwd=str(tmp_path), log_path=str(tmp_path / "log"), timeout_s=30, warm=parent)
            assert (out.start, out.exit_code) == ("warm", i % 3)
        assert len(starter.parents) == 1
    finally:
        starter.stop()


EXITS = textwrap.dedent(
    """
    import atexit, concurrent.futures, os, sys, threading, time, weakref

    out = sys.argv[1]
    pool = concurrent.futures.ThreadPoolExecutor(2)  # never shut down: exiting must not wait for it forever
    pool.submit(time.sleep, 0.1)

    class Gone:
        pass

    gone = Gone()
    proxy = weakref.proxy(gone)  # a dead weak proxy among the collector's objects
    del gone
    kept = open(os.path.join(out, "unclosed.txt"), "w")  # never closed: teardown would flush it
    kept.write("buffered line\\n")

    def late():
        time.sleep(0.3)
        open(os.path.join(out, "thread.txt"), "w").write("thread finished\\n")

    threading.Thread(target=late).start()  # not a daemon: the exit waits for it
    atexit.register(lambda: open(os.path.join(out, "atexit.txt"), "a").write("handler ran\\n"))  # twice would show

    class Noisy:
        def __del__(self):
            open(os.path.join(out, "del.txt"), "w").write("teardown ran\\n")

    alive_at_exit = Noisy()
    print("stdout line", end="")  # no newline: still buffered at exit
    sys.exit(sys.argv[2] if not sys.argv[2].isdigit() else int(sys.argv[2]))
    """
)


@pytest.mark.parametrize("full_exit", [False, True])
def test_a_warm_trial_exits_as_a_script_would_without_the_teardown(tmp_path, full_exit):
    """Threads joined, exit handlers run, unclosed files and stdout flushed, the exit status kept;
    only the interpreter's teardown (a __del__ at exit) is skipped, unless GRID_FULL_EXIT=1."""
    (tmp_path / "exits.py").write_text(EXITS)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(TRIAL_SITE), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    if full_exit:
        env["GRID_FULL_EXIT"] = "1"
    starter = warm.Starter()
    try:
        for code, status in (("3", 3), ("a message", 1)):
            out = tmp_path / f"out-{status}"
            out.mkdir()
            argv = [sys.executable, str(tmp_path / "exits.py"), str(out), code]
            parent, why = starter.parent(warm.plan(argv, env, {}, True))
            assert parent is not None, why
            log = tmp_path / f"log-{status}"
            result = run_child(argv, env=env, cwd=str(tmp_path), log_path=str(log), timeout_s=30, warm=parent)
            assert (result.start, result.exit_code) == ("warm", status)
            assert (out / "unclosed.txt").read_text() == "buffered line\n"
            assert (out / "thread.txt").read_text() == "thread finished\n"
            assert (out / "atexit.txt").read_text() == "handler ran\n"
            assert (out / "del.txt").exists() == full_exit
            text = log.read_text()
            assert "stdout line" in text
            assert ("a message" in text) == (code == "a message")
    finally:
        starter.stop()


@pytest.mark.slow
def test_the_parent_of_a_scripts_next_trials_imports_what_its_first_trial_imported(tmp_path):
    """After a script's first trial on a worker, its parent imports the packages that trial imported
    (top-level, not the script's own files); the row says what was pre-imported and gpu-grid's own
    seconds around the trial."""
    (tmp_path / "learn.py").write_text("import sys, yaml, helper_mod\nprint('yaml', yaml.__version__, helper_mod.X)\n")
    (tmp_path / "helper_mod.py").write_text("X = 1\n")
    spec_file = tmp_path / "learn.yaml"
    spec_file.write_text(json.dumps({"name": "learn", "command": "python learn.py", "axes": {"n": [1, 2, 3]}}))
    opts = RunOptions(results=str(tmp_path / "results"), runner="local", num_gpus=1, live=False)
    run_sweep(load_spec(str(spec_file)), opts)
    rows = sorted(ResultStore(str(tmp_path / "results")).latest("learn").to_pylist(), key=lambda r: r["started_at"])
    assert [(r["status"], r["start"]) for r in rows] == [("ok", "warm")] * 3
    # the first from what the script's text imports; the rest from the same parent: it had all they import
    assert [r["warm_modules"] for r in rows] == [["gridtrial.boot", "gridtrial.runner", "yaml"]] * 3
    for row in rows:
        assert 0 < row["boot_s"] < 2.0 and 0 <= row["finish_s"] < 10.0


@pytest.mark.slow
def test_a_script_that_imports_more_than_its_text_says_never_waits_for_a_second_parent(
    tmp_path, tmp_path_factory, monkeypatch
):
    """A script whose text imports a slow package (2 s, as torch and lightning take 16-19 s on a GPU box)
    and whose run imports one more: its next trial forks at once from the parent that imported what
    the text said, while a parent with both imports in the background, and serves the trials that
    come once it is up. (Before, the second trial waited for that parent: on the H100, 19 s of the
    Lightning LM search's 96.)"""
    site = tmp_path_factory.mktemp("site")  # installed packages: not beside the script (its own files)
    (site / "slow_base.py").write_text("import time\ntime.sleep(2)\n")
    (site / "lazy_extra.py").write_text("X = 1\n")
    (tmp_path / "train.py").write_text(
        "import time, slow_base\n\ndef run():\n    import lazy_extra\n    time.sleep(0.8)\n\nrun()\n"
    )
    spec_file = tmp_path / "twice.yaml"
    spec_file.write_text(json.dumps({"name": "twice", "command": "python train.py", "axes": {"n": list(range(6))}}))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p))
    opts = RunOptions(results=str(tmp_path / "results"), runner="local", num_gpus=1, live=False)
    run_sweep(load_spec(str(spec_file)), opts)
    rows = sorted(ResultStore(str(tmp_path / "results")).latest("twice").to_pylist(), key=lambda r: r["started_at"])
    assert [(r["status"], r["start"]) for r in rows] == [("ok", "warm")] * 6
    text_only = ["gridtrial.boot", "gridtrial.runner", "slow_base"]
    assert rows[0]["warm_modules"] == rows[1]["warm_modules"] == text_only
    waits = [(r["started_at"] - r["dispatched_at"]).total_seconds() for r in rows]
    assert waits[1] < 1.5, waits  # not the 2 s of a second parent's imports
    assert "lazy_extra" in rows[-1]["warm_modules"], [r["warm_modules"] for r in rows]


def test_what_a_script_imports_is_read_from_its_text(tmp_path):
    """Module-level imports, guarded ones too, not a function's; not the standard library's, not the
    script's own modules beside it, not gpu-grid's."""
    from grid.trial.imports import script_imports

    (tmp_path / "mine.py").write_text("X = 1\n")
    (tmp_path / "train.py").write_text(
        "import os, json\nimport numpy as np\nfrom yaml import safe_load\nimport mine\n"
        "try:\n    import rich.console\nexcept ImportError:\n    pass\nif True:\n    from gridtrial import report\n"
        "def later():\n    import psutil\n"
    )
    assert script_imports(str(tmp_path / "train.py")) == ("numpy", "yaml", "rich")
    assert script_imports(str(tmp_path / "missing.py")) == ()
