"""NVML measurement from outside the child: fallback without NVML, real figures on a GPU."""

from __future__ import annotations

import os
import sys
import time

import pytest

from grid.trial.isolate import run_child
from grid.trial.nvml import Trapezoid, gpu_samplers


def test_cpu_slot_measures_nothing():
    assert gpu_samplers(()) == ([], {})


def test_trapezoid_integrates_samples_over_time():
    """Power (W -> J) and utilisation (busy fraction -> GPU-seconds) are integrated between samples."""
    integral = Trapezoid()
    integral.add(2.0)
    time.sleep(0.2)
    integral.add(4.0)
    assert integral.samples == 2 and 0.19 <= integral.span_s < 0.5
    assert integral.total == pytest.approx(3.0 * integral.span_s)


def test_unusable_gpu_ids_say_why(monkeypatch):
    samplers, info = gpu_samplers(("7",))
    if samplers:  # a real GPU box with a GPU 7: nothing to check here
        pytest.skip("this machine has a GPU 7")
    assert info["gpu_mem_method"].startswith("unavailable (")


def run_on_gpu0(tmp_path, code, samplers):
    """`python -c code` on GPU 0, watched by the samplers as a worker watches a trial."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    out = run_child(
        [sys.executable, "-c", code],
        env=env,
        cwd=None,
        log_path=str(tmp_path / "log"),
        timeout_s=120,
        samplers=samplers,
        interval_s=0.02,
    )
    assert out.exit_code == 0, (tmp_path / "log").read_text()
    return out


@pytest.mark.gpu
def test_child_allocation_is_seen_per_process(tmp_path):
    torch_code = (
        "import torch, time; x = torch.empty(1024 * 1024 * 1024, dtype=torch.uint8, device='cuda');"
        "torch.cuda.synchronize(); time.sleep(1.5)"
    )
    samplers, info = gpu_samplers(("0",))
    assert samplers, info
    run_on_gpu0(tmp_path, torch_code, samplers)
    cols = samplers[0].columns()
    assert cols["gpu_mem_peak_mib"] >= 1024, cols
    assert cols["gpu_device_mem_peak_mib"] >= 1024, cols
    assert info["gpu_name"] and info["gpu_total_mib"] > 1024 and info["driver_version"]


BURN = (
    "import torch, time; a = torch.randn(4096, 4096, device='cuda'); t = time.time()\n"
    "while time.time() - t < 2.0: a = (a @ a).clamp_(-1, 1)\n"
    "torch.cuda.synchronize()"
)


@pytest.mark.gpu
@pytest.mark.parametrize("counter", [True, False])
def test_energy_from_the_counter_or_integrated_power(tmp_path, counter):
    samplers, _ = gpu_samplers(("0",))
    assert samplers
    if not counter:  # as on a GPU without the total-energy counter: power samples integrated
        samplers[0].energy_start = None
    out = run_on_gpu0(tmp_path, BURN, samplers)
    cols = samplers[0].columns()
    # two seconds of matmuls: well above idle, well below 1 kW
    assert 100 < cols["energy_j"] < 1000 * out.wall_s, cols
    expected = "nvml total-energy counter" if counter else "nvml power integrated over"
    assert cols["energy_method"].startswith(expected), cols


@pytest.mark.gpu
def test_utilisation_tells_computing_from_waiting(tmp_path):
    """A trial that imports torch, computes for 2 s, then idles for 2 s: the GPU-seconds computing
    are about 2 and the utilisation well under 100 %, where busy time would say 100 %."""
    samplers, info = gpu_samplers(("0",))
    assert samplers, info
    run_on_gpu0(tmp_path, BURN + "\ntime.sleep(2.0)", samplers)
    cols = samplers[0].columns()
    assert 5 <= cols["gpu_util_pct"] <= 70, cols
    assert 1.0 <= cols["gpu_compute_s"] <= 3.5, cols
