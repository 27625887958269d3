"""Text from trials and results files, shown as text; the consoles every command prints with.

A trial's error message, a metric's name, a config value or a sweep read from a results file may
hold anything: `[/data]` (rich markup), `:smile:` (an emoji code), an escape sequence that moves
the cursor or retitles the terminal, a right-to-left override. `printable` shows control and
invisible formatting characters escaped (`\\x1b`, `\\n`); `plain` wraps the result in a rich
`Text`, which rich never parses as markup. Every command builds its consoles here: no emoji codes,
and a reader that goes away (`grid query ... | head -1`) ends the command with exit 141, quietly,
as `cat` does, instead of rich's exit 1.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

# C0 and C1 controls, DEL, zero-width characters and bidirectional overrides/isolates.
_HIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE: what `cat` gives when its reader went away


def printable(value: Any, lines: bool = False) -> str:
    """`value` as one line of text, its control and invisible characters escaped (`lines`: its
    line breaks kept, for a message of several lines)."""
    text = value if isinstance(value, str) else str(value)
    if lines:
        return "\n".join(printable(line) for line in text.split("\n"))
    return _HIDDEN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def plain(value: Any, style: str = "", lines: bool = False) -> Text:
    """A value from a trial or a results file as a rich `Text`: printed as it is, never as markup."""
    return Text(printable(value, lines), style=style)


def quiet_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered, and Python's flush at exit, go nowhere."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


def ensure_std_streams() -> None:
    """A closed stdout or stderr (`grid status >&-`) becomes /dev/null, so that the first file the
    command opens never takes descriptor 1 or 2 and receives its output."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)  # the lowest free descriptor: fd
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's own stdout, for its life
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


class _Console(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        quiet_stdout()
        raise BrokenPipeError  # the command ends with BROKEN_PIPE_EXIT (grid/cli.py)


def make_console(stderr: bool = False, width: int | None = None) -> Console:
    """A console for a command: no emoji codes; a reader that went away ends it quietly."""
    return _Console(stderr=stderr, width=width, emoji=False)
