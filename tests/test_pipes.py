"""Every command in the README's list ends quietly when its reader goes away (`| head -1`) and when
its stdout is closed (`>&-`): exit 141 or 0 as `cat` does, never a traceback. Real pipes, real
processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SPEC = (
    "name: pipes\nworkload: sleep\nparams: {seconds: 0.05}\naxes:\n  batch_size: [1, 2, 3]\ntimeout_s: 30\n"
    "metrics:\n  slept: {pattern: 'slept ([0-9.]+)'}\n"
)
COMMANDS = {
    "help": ["--help"],
    "plan": ["plan", "spec.yaml"],
    "run": ["run", "spec.yaml", "--results", "fresh", "--runner", "local"],
    "run-plain": ["run", "spec.yaml", "--results", "fresh2", "--runner", "local", "--plain"],
    "status": ["status", "results"],
    "report": ["report", "results", "--out", "rep"],
    "compare": ["compare", "results", "results", "--metric", "wall_s"],
    "query": ["query", "results", "select * from attempts"],
    "query-csv": ["query", "results", "select * from attempts", "--csv"],
    "rescan": ["rescan", "results", "spec.yaml"],
    "compact": ["compact", "results"],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipes")
    (root / "spec.yaml").write_text(SPEC)
    done = subprocess.run(
        [sys.executable, "-m", "grid", "run", "spec.yaml", "--results", "results", "--runner", "local", "--plain"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return root


def _quiet(code: int, err: str) -> None:
    assert code in (0, 141), (code, err)
    assert "Traceback" not in err and "Exception ignored" not in err and "Error" not in err, err


@pytest.mark.parametrize("name", COMMANDS)
def test_reader_goes_away(project, name):
    """The reader closes the pipe before the command writes its first line."""
    read, write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "grid", *COMMANDS[name]], cwd=project, stdout=write, stderr=subprocess.PIPE, text=True
    )
    os.close(write)
    os.close(read)  # nobody reads: the command's first write finds a broken pipe
    _, err = proc.communicate(timeout=300)
    _quiet(proc.returncode, err)


@pytest.mark.parametrize("name", ["status", "query", "query-csv", "report"])
def test_head_reads_one_line(project, name):
    args = " ".join(f"'{a}'" for a in COMMANDS[name])
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{sys.executable}' -m grid {args} | head -1 >/dev/null"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    _quiet(done.returncode, done.stderr)


@pytest.mark.parametrize("name", COMMANDS)
def test_stdout_closed(project, name):
    done = subprocess.run(
        ["bash", "-c", '"$@" >&-', "_", sys.executable, "-m", "grid", *COMMANDS[name]],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    _quiet(done.returncode, done.stderr)
    assert not (project / "1").exists()
