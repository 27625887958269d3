"""NVML measurement from outside the child: fallback without NVML, real figures on a GPU."""

from __future__ import annotations

import os
import sys

import pytest

from grid.trial.isolate import run_child
from grid.trial.nvml import gpu_samplers


def test_cpu_slot_measures_nothing():
    assert gpu_samplers(()) == ([], {})


def test_unusable_gpu_ids_say_why(monkeypatch):
    samplers, info = gpu_samplers(("7",))
    if samplers:  # a real GPU box with a GPU 7: nothing to check here
        pytest.skip("this machine has a GPU 7")
    assert info["gpu_mem_method"].startswith("unavailable (")


@pytest.mark.gpu
def test_child_allocation_is_seen_per_process(tmp_path):
    torch_code = (
        "import torch, time; x = torch.empty(1024 * 1024 * 1024, dtype=torch.uint8, device='cuda');"
        "torch.cuda.synchronize(); time.sleep(1.5)"
    )
    samplers, info = gpu_samplers(("0",))
    assert samplers, info
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    out = run_child(
        [sys.executable, "-c", torch_code],
        env=env,
        cwd=None,
        log_path=str(tmp_path / "log"),
        timeout_s=120,
        samplers=samplers,
        interval_s=0.02,
    )
    assert out.exit_code == 0, (tmp_path / "log").read_text()
    cols = samplers[0].columns()
    assert cols["gpu_mem_peak_mib"] >= 1024, cols
    assert cols["gpu_device_mem_peak_mib"] >= 1024, cols
    assert info["gpu_name"] and info["gpu_total_mib"] > 1024 and info["driver_version"]
