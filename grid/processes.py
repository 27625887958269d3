"""Whether a process recorded earlier is still the one running: by its pid and, where its start
time was kept, that too (a pid is reused once its process is gone). Zombies count as gone."""

from __future__ import annotations

import contextlib

import psutil


def living(pid: int, created: float | None = None) -> psutil.Process | None:
    """The process `pid` if it still runs (and started at `created`, psutil's clock, where given)."""
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        if (created is None or proc.create_time() == created) and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    return None
