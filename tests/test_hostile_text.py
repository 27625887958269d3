"""Text from a trial is printed as text by every command: rich markup, emoji codes and escape
sequences in an error, a metric's name and a config value change nothing and crash nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grid.text import printable

SCRIPT = r"""
import sys
from gridtrial import config, report

if config()["tag"] == "boom":
    raise RuntimeError("unexpected token [/data] in config; pip install transformers[torch] \x1b]0;owned\x07\x1b[2J")
report({"[/]m": 1.5, "[bold]x": 2.0, ":smile:": 3.0, "a\x1b[31mred": 4.0})
print("done [/]")
"""
HOSTILE = ("[/data]", "transformers[torch]", "[/]m", "[bold]x", ":smile:")


def _grid(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grid", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "train.py").write_text(SCRIPT)
    (root / "spec.yaml").write_text(
        "name: hostile\ncommand: python train.py\naxes:\n  tag: ['boom', '[/x] \\e[31m:smile:']\ntimeout_s: 60\n"
    )
    run = _grid("run", "spec.yaml", "--results", "results", "--runner", "local", "--plain", "--no-merge", cwd=root)
    return root, run


def _clean(out: str) -> None:
    assert "Traceback" not in out and "MarkupError" not in out, out
    assert "\x1b" not in out and "\x07" not in out, repr(out)  # escape sequences shown escaped, never sent
    assert "\U0001f604" not in out  # :smile: stays text


def test_run_prints_hostile_values_as_text(hostile_results):
    _, run = hostile_results
    assert run.returncode == 0, run.stdout + run.stderr
    _clean(run.stdout + run.stderr)
    for text in ("[/data]", "pip install transformers[torch]", "[/]m", "\\x1b]0;owned\\x07"):
        assert text in run.stdout, (text, run.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ("status", "results"),
        ("report", "results", "--out", "rep"),
        ("query", "results", "select * from trials"),
        ("query", "results", 'select "[/]m", error_message, tag from trials'),
        ("compare", "results", "results", "--metric", "[/]m", "--goal", "max"),
        ("compact", "results"),
    ],
)
def test_every_command_prints_hostile_values_as_text(hostile_results, args):
    root, _ = hostile_results
    done = _grid(*args, cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    _clean(done.stdout + done.stderr)
    if args[0] in ("status", "report"):
        assert "[/data]" in done.stdout and "transformers[torch]" in done.stdout
    if args[0] == "query" and "error_message" in args[2]:
        assert "[/]m" in done.stdout and "\\x1b]0;owned\\x07" in done.stdout


def test_printable_escapes_controls_and_invisible_formatting():
    assert printable("a\x1b[31mb\u202ec\x00\n") == "a\\x1b[31mb\\u202ec\\x00\\n"
    assert printable("line1\nline\x072", lines=True) == "line1\nline\\x072"
    assert printable(None) == "None" and printable("[/]") == "[/]"
