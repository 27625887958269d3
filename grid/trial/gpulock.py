"""One GPU, one exclusive trial, across sweeps and drivers on a node.

Each attempt holds a lock per GPU for its whole run: exclusive for a timing trial, shared for
trials that may share a GPU (memory probes), so a timing trial of another sweep or another
driver waits for the GPU to be free, and nothing shares a GPU with a timing trial. The locks are
`flock`s on files named after the GPUs' UUIDs in the user's private folder (grid/private.py): the
kernel frees them when their holder dies. A folder every user could write to would let another user
hold, remove or replace a lock; so the locks order this user's trials, and another user's processes
on a GPU show in the row from NVML (`gpu_foreign_pids`). GPUs without an NVML identity (fake ones)
are not locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from grid.private import private_folder, temp_root

LOCK_DIR = Path(temp_root(), f"gpu-grid-{os.geteuid()}", "locks")


def _lock_file(lock_dir: Path, key: str) -> Path:
    return lock_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", key) + ".lock")


@contextlib.contextmanager
def holding(
    keys: list[str],
    exclusive: bool,
    lock_dir: Path = LOCK_DIR,
    waiting: Callable[[str], None] | None = None,
) -> Iterator[float]:
    """Hold the GPUs' locks; yields the seconds spent waiting for them. `waiting(key)` is told
    when a GPU is held by someone else, before the wait."""
    if keys:
        if lock_dir == LOCK_DIR:
            private_folder(str(LOCK_DIR.parent))  # the user's own folder under the shared temporary one
        private_folder(str(lock_dir))
    fds: list[int] = []
    started = time.monotonic()
    try:
        for key in sorted(keys):  # one order for all: two attempts never wait on each other in a circle
            fd = os.open(_lock_file(lock_dir, key), os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            fds.append(fd)
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting:
                    waiting(key)
                fcntl.flock(fd, mode)
        yield time.monotonic() - started
    finally:
        for fd in fds:
            os.close(fd)  # closing the descriptor releases its lock
