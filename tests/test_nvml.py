"""NVML measurement from outside the child: fallback without NVML, real figures on a GPU."""

from __future__ import annotations

import os
import sys
import time

import pytest

from grid.results.row import Conditions
from grid.trial.isolate import run_child
from grid.trial.nvml import GpuState, GpuView, Trapezoid, gpu_samplers, throttle_names


def test_cpu_slot_measures_nothing():
    assert gpu_samplers(()) == GpuView()


def test_trapezoid_integrates_samples_over_time():
    """Power (W -> J) and utilisation (busy fraction -> GPU-seconds) are integrated between samples."""
    integral = Trapezoid()
    integral.add(2.0)
    time.sleep(0.2)
    integral.add(4.0)
    assert integral.samples == 2 and 0.19 <= integral.span_s < 0.5
    assert integral.total == pytest.approx(3.0 * integral.span_s)


def test_unusable_gpu_ids_say_why(monkeypatch):
    view = gpu_samplers(("7",))
    if view.samplers:  # a real GPU box with a GPU 7: nothing to check here
        pytest.skip("this machine has a GPU 7")
    assert view.unavailable is not None and view.unavailable.startswith("unavailable (")


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
    view = gpu_samplers(("0",))
    assert view.samplers, view
    run_on_gpu0(tmp_path, torch_code, view.samplers)
    memory = view.samplers[0].memory()
    assert memory.gpu_mem_peak_mib is not None and memory.gpu_mem_peak_mib >= 1024, memory
    assert memory.gpu_device_mem_peak_mib is not None and memory.gpu_device_mem_peak_mib >= 1024, memory
    facts = view.facts
    assert facts.gpu_name and facts.gpu_total_mib and facts.gpu_total_mib > 1024 and facts.driver_version


BURN = (
    "import torch, time; a = torch.randn(4096, 4096, device='cuda'); t = time.time()\n"
    "while time.time() - t < 2.0: a = (a @ a).clamp_(-1, 1)\n"
    "torch.cuda.synchronize()"
)


@pytest.mark.gpu
@pytest.mark.parametrize("counter", [True, False])
def test_energy_from_the_counter_or_integrated_power(tmp_path, counter):
    samplers = gpu_samplers(("0",)).samplers
    assert samplers
    if not counter:  # as on a GPU without the total-energy counter: power samples integrated
        samplers[0].energy_start = None
    out = run_on_gpu0(tmp_path, BURN, samplers)
    energy = samplers[0].energy()
    # two seconds of matmuls: well above idle, well below 1 kW
    assert energy.energy_j is not None and 100 < energy.energy_j < 1000 * out.wall_s, energy
    expected = "nvml total-energy counter" if counter else "nvml power integrated over"
    assert energy.energy_method is not None and energy.energy_method.startswith(expected), energy


@pytest.mark.gpu
def test_utilisation_tells_computing_from_waiting(tmp_path):
    """A trial that imports torch, computes for 2 s, then idles for 2 s: the GPU-seconds computing
    are about 2 and the utilisation well under 100 %, where busy time would say 100 %."""
    view = gpu_samplers(("0",))
    assert view.samplers, view
    run_on_gpu0(tmp_path, BURN + "\ntime.sleep(2.0)", view.samplers)
    use = view.samplers[0].utilisation()
    assert use.gpu_util_pct is not None and 5 <= use.gpu_util_pct <= 70, use
    assert use.gpu_compute_s is not None and 1.0 <= use.gpu_compute_s <= 3.5, use


def test_throttle_reasons_are_nvmls_own_bits():
    """The names decode NVML's mask by the bits nvidia-ml-py itself defines (no GPU needed)."""
    import pynvml

    assert throttle_names(pynvml.nvmlClocksThrottleReasonSwPowerCap) == ["sw_power_cap"]
    assert throttle_names(
        pynvml.nvmlClocksThrottleReasonHwThermalSlowdown | pynvml.nvmlClocksThrottleReasonGpuIdle
    ) == [
        "gpu_idle",
        "hw_thermal",
    ]
    assert throttle_names(pynvml.nvmlClocksThrottleReasonDisplayClockSetting) == ["display_clock"]
    assert throttle_names(0x10000) == ["0x10000"] and throttle_names(0) == []


def test_gpu_state_over_the_samples():
    state = GpuState()
    state.fill(empty := Conditions())
    assert empty == Conditions()  # no sample: nothing claimed
    state.add(1980, 2619, 40, 700_000, 0x1)  # idle
    state.add(1755, 2619, 71, 700_000, 0x4)  # power-capped
    state.add(1980, 2619, 65, 700_000, 0)
    conditions = Conditions()
    state.fill(conditions)
    assert conditions.gpu_sm_clock_mhz == 1980 and conditions.gpu_sm_clock_min_mhz == 1755
    assert conditions.gpu_mem_clock_mhz == 2619 and conditions.gpu_temp_max_c == 71
    assert conditions.gpu_power_limit_w == 700 and conditions.gpu_throttle_reasons == ["gpu_idle", "sw_power_cap"]
    assert conditions.gpu_throttled_share == pytest.approx(1 / 3)


@pytest.mark.gpu
def test_gpu_state_is_sampled_on_a_real_gpu(tmp_path):
    samplers = gpu_samplers(("0",)).samplers
    assert samplers
    run_on_gpu0(tmp_path, BURN, samplers)
    conditions = Conditions()
    samplers[0].state.fill(conditions)
    assert conditions.gpu_sm_clock_mhz and conditions.gpu_sm_clock_mhz > 100, conditions
    assert conditions.gpu_temp_max_c and conditions.gpu_power_limit_w and conditions.gpu_power_limit_w > 10
    assert conditions.gpu_throttle_reasons is not None and 0 <= (conditions.gpu_throttled_share or 0) <= 1
