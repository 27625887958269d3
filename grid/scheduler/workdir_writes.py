"""Files a sweep's trials wrote into the workdir they all share.

A user's command runs in the spec's folder, so a script that saves `best.keras` or writes
`logs/` there writes the same path in every trial: each trial overwrites the one before, two on
different GPUs mix theirs, and a script that loads its checkpoint back to evaluate it may read
another trial's. The driver looks at the workdir before the trials run and after (sizes and
modification times, bounded: a folder of a million images is not walked) and names what changed,
so the user can move it to each trial's own folder (GRID_TRIAL_DIR, `{trial_dir}`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

MAX_ENTRIES = 20_000  # a bigger workdir is not checked
MAX_SECONDS = 1.0
SHOWN = 5
_SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})  # Python's own bytecode; not the trials' outputs

Stamp = tuple[int, int]  # (mtime_ns, size)


@dataclass(frozen=True)
class Snapshot:
    root: str
    files: dict[str, Stamp] | None  # relative path -> stamp; None: too large to check


def own_output() -> list[str]:
    """The files this process's standard output and error go to (`grid run ... > run.log`)."""
    found = []
    for fd in (1, 2):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if os.path.isfile(path):
            found.append(path)
    return found


def snapshot(root: str, exclude: list[str]) -> Snapshot:
    """The workdir's files and their stamps, leaving out `exclude` (folders such as the results and
    the state, or files), hidden folders (.git, .venv) and __pycache__."""
    skip = {os.path.realpath(p) for p in exclude if p}
    files: dict[str, Stamp] = {}
    deadline = time.monotonic() + MAX_SECONDS
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if len(files) >= MAX_ENTRIES or time.monotonic() > deadline:
                return Snapshot(root, None)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name.startswith(".") or entry.name in _SKIPPED_DIRS:
                        continue
                    if os.path.realpath(entry.path) not in skip:
                        stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and os.path.realpath(entry.path) not in skip:
                    st = entry.stat(follow_symlinks=False)
                    files[os.path.relpath(entry.path, root)] = (st.st_mtime_ns, st.st_size)
            except OSError:
                continue
    return Snapshot(root, files)


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """Files created or modified between the two snapshots (sorted); [] if either was too large."""
    if before.files is None or after.files is None:
        return []
    return sorted(path for path, stamp in after.files.items() if before.files.get(path) != stamp)


def warning(paths: list[str], root: str, attempts: int) -> str:
    shown = ", ".join(paths[:SHOWN]) + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")
    return (
        f"[grid] warning: files changed in the workdir that the {attempts} trials share ({root}) while "
        f"they ran: {shown}. A trial that writes there writes the same paths as every other trial: each "
        f"overwrites the last one's, and trials that run at the same time mix theirs. Give each its own: "
        f"write under $GRID_TRIAL_DIR (gridtrial.trial_dir() in Python, {{trial_dir}} in the command, e.g. "
        f"--out {{trial_dir}}); each trial's folder is kept under <results>/sweep=<name>/_trials/ and its "
        f"row's trial_dir names it"
    )
