"""A command's program must exist when the spec is read: `pyhton train.py` is a spec error at
`grid plan`, not a sweep of `error` rows."""

from __future__ import annotations

import difflib
import os
import shutil
import sys
from pathlib import Path

from grid.spec.target import is_python, resolve_program


def check_program(tokens: tuple[str, ...], workdir: Path, problems: list[str]) -> None:
    """The first word of a command is a file (relative to the workdir) or a program on the trial's
    PATH (the interpreter's folder first, as launch.py gives it). A placeholder is checked per trial."""
    if not tokens or is_python(tokens[0]) or "{" in tokens[0]:
        return
    path = os.pathsep.join(p for p in (os.path.dirname(sys.executable), os.environ.get("PATH")) if p)
    if resolve_program(tokens[0], path, str(workdir)) is not None:
        return
    hint = ""
    if "/" not in tokens[0]:
        launchers = [n for n in ("torchrun", "accelerate", "deepspeed") if shutil.which(n, path=path)]
        known = ["python", "python3", *launchers]
        close = difflib.get_close_matches(tokens[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    where = "an executable file" if "/" in tokens[0] else "a program on PATH nor a file"
    problems.append(f"command: program {tokens[0]!r} is neither {where} in {workdir}{hint}")
