"""The process-tree samplers: RSS counts the trial's processes, not gpu-grid's own helpers in the tree."""

from __future__ import annotations

import subprocess
import sys

from grid.trial.measure import HELPERS, RssSampler

NAMED = (
    "import ctypes, sys, time\n"
    "ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
    "buffer = bytearray(64 * 1024 * 1024)\n"
    "print('ready', flush=True)\n"
    "time.sleep(30)\n"
)


def _named(name: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", NAMED, name], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_the_rss_of_a_tree_leaves_gpu_grids_rank_parent_out():
    (helper_name,) = HELPERS
    helper, trial = _named(helper_name), _named("python")
    try:
        both, alone = RssSampler(), RssSampler()
        both.sample([trial.pid, helper.pid])
        alone.sample([trial.pid])
        assert alone.current_mib > 64
        assert both.current_mib == alone.current_mib  # the helper's 64 MiB left out
    finally:
        for proc in (helper, trial):
            proc.kill()
            proc.wait()
