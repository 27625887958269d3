"""Samplers that watch a trial's process tree from outside the child.

`RssSampler` sums resident memory over the tree. NVML sampling (per-process GPU memory of the
tree, and device-level use minus a pre-launch baseline) lives in `grid/nvml.py`.
"""

from __future__ import annotations

import psutil

MIB = 1024 * 1024


def process_tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class RssSampler:
    """Peak and current resident set size of the whole process tree, in MiB."""

    def __init__(self) -> None:
        self.current_mib = 0.0
        self.peak_mib = 0.0

    def sample(self, tree: list[psutil.Process]) -> None:
        total = 0
        for proc in tree:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        self.current_mib = total / MIB
        self.peak_mib = max(self.peak_mib, self.current_mib)
