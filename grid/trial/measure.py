"""Samplers that watch a trial's process tree from outside the child.

The tree is walked through /proc/<pid>/task/<tid>/children and RSS read from /proc/<pid>/statm:
at a 20 ms interval, psutil's `children(recursive=True)` (a scan of all of /proc each time) cost
~105 ms of CPU per one-second trial; this costs about a third of that (benchmarks/RESULTS.md).
NVML sampling (per-process GPU memory) lives in `nvml.py`.
"""

from __future__ import annotations

import os

import psutil

from grid.protocol import RANK_PARENT_NAME

MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int] | None:
    """Direct children of `pid`, or None when this kernel has no /proc children files."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return None
        except OSError:
            continue
    return out


def process_tree(root: int) -> list[int]:
    """The pids of `root` and all its descendants."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = _children(pid)
        if kids is None:  # no CONFIG_PROC_CHILDREN: fall back to psutil's full scan
            try:
                return [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
            except psutil.Error:
                return [root]
        pids.append(pid)
        todo += kids
    return pids


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


# gpu-grid's own helpers inside a trial's tree, by process name: the rank parent that torch's
# launcher forks its ranks from (tasks/site/gridtrial/ranks.py), an idle copy of the launcher whose
# pages the launcher and the ranks share. A cold run has no such process, so it is not counted.
HELPERS = frozenset({RANK_PARENT_NAME})


def _is_helper(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() in HELPERS
    except OSError:
        return False


class RssSampler:
    """Peak and current resident set size of the whole process tree (gpu-grid's helpers left out), in MiB."""

    def __init__(self) -> None:
        self.current_mib = 0.0
        self.peak_mib = 0.0
        self._helper: dict[int, bool] = {}  # by pid, read once: a process's name is read when it first shows

    def sample(self, tree: list[int]) -> None:
        counted = []
        for pid in tree:
            helper = self._helper.get(pid)
            if helper is None:
                helper = self._helper[pid] = _is_helper(pid)
            if not helper:
                counted.append(pid)
        self.current_mib = sum(rss_bytes(pid) for pid in counted) / MIB
        self.peak_mib = max(self.peak_mib, self.current_mib)
