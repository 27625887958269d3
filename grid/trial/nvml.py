"""GPU memory seen from outside the child, through NVML (nvidia-ml-py).

Per GPU of the trial: the memory NVML attributes to the child's process tree (peak), the
device's used memory minus its value just before launch (peak), the energy the GPUs used
from launch to end (NVML's total-energy counter; power samples integrated where it is missing), and
how much of the trial the GPUs spent computing (NVML's utilisation: the share of the last sample
period in which a kernel ran), so a worker "busy" for a trial cannot hide a GPU that idled.
When NVML cannot attribute memory to our pids (no per-process accounting, or a container's pid namespace hides them),
the device-level figure stands in and `gpu_mem_method` says so.
"""

from __future__ import annotations

import bisect
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from grid.results.row import Conditions, Energy, GpuFacts, GpuMemory, GpuUse

MIB = 1024 * 1024
_init_lock = threading.Lock()
_init_error: str | None = None
_initialised = False


def _nvml() -> Any:
    """pynvml, initialised once per process; raises RuntimeError with the reason if unusable."""
    global _initialised, _init_error
    import pynvml

    with _init_lock:
        if not _initialised and _init_error is None:
            try:
                pynvml.nvmlInit()
                _initialised = True
            except pynvml.NVMLError as exc:
                _init_error = f"{type(exc).__name__}: {exc}"
    if _init_error:
        raise RuntimeError(_init_error)
    return pynvml


def _handle(nvml: Any, gpu_id: str) -> Any:
    if gpu_id.startswith(("GPU-", "MIG-")):
        return nvml.nvmlDeviceGetHandleByUUID(gpu_id)
    return nvml.nvmlDeviceGetHandleByIndex(int(gpu_id))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_facts(nvml: Any, handles: dict[str, Any]) -> GpuFacts:
    first = next(iter(handles.values()))
    cuda = nvml.nvmlSystemGetCudaDriverVersion()
    return GpuFacts(
        gpu_name=_text(nvml.nvmlDeviceGetName(first)),
        gpu_total_mib=nvml.nvmlDeviceGetMemoryInfo(first).total / MIB,
        driver_version=_text(nvml.nvmlSystemGetDriverVersion()),
        cuda_version=f"{cuda // 1000}.{cuda % 1000 // 10}",
    )


class Trapezoid:
    """The integral over time of a sampled quantity: trapezoids between consecutive samples."""

    def __init__(self) -> None:
        self.total = 0.0
        self.span_s = 0.0
        self.samples = 0
        self._last: tuple[float, float] | None = None  # (time, value) of the previous sample

    def add(self, value: float) -> None:
        now = time.monotonic()
        if self._last is not None:
            then, before = self._last
            self.total += (now - then) * (value + before) / 2
            self.span_s += now - then
        self._last = (now, value)
        self.samples += 1


# NVML's clock throttle reasons (nvmlClocksThrottleReason*): bit -> name; the last four slow a timing down
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clock",
}
SLOWING = 0x4 | 0x8 | 0x20 | 0x40 | 0x80


def throttle_names(mask: int) -> list[str]:
    """The names of the reasons set in an NVML throttle-reason mask (unknown bits by their value)."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    rest = mask & ~sum(THROTTLE_REASONS)
    return names + ([f"0x{rest:x}"] if rest else [])


class GpuState:
    """The GPU's state over a trial, one reading per sample: clocks, temperature, power limit and
    throttle reasons (what makes the same code run slower on another night)."""

    def __init__(self) -> None:
        self.sm: list[float] = []
        self.mem: list[float] = []
        self.temp_max: float | None = None
        self.power_limit_w: float | None = None
        self.reasons = 0  # every reason seen
        self.slowed = 0  # samples with a reason that slows the GPU down
        self.samples = 0

    def add(self, sm_mhz: float, mem_mhz: float, temp_c: float, limit_mw: float | None, mask: int) -> None:
        self.sm.append(sm_mhz)
        self.mem.append(mem_mhz)
        self.temp_max = temp_c if self.temp_max is None else max(self.temp_max, temp_c)
        if limit_mw is not None:
            self.power_limit_w = limit_mw / 1000
        self.reasons |= mask
        self.slowed += bool(mask & SLOWING)
        self.samples += 1

    def fill(self, conditions: Conditions) -> None:
        if not self.samples:
            return
        conditions.gpu_sm_clock_mhz = statistics.median(self.sm)
        conditions.gpu_sm_clock_min_mhz = min(self.sm)
        conditions.gpu_mem_clock_mhz = statistics.median(self.mem)
        conditions.gpu_temp_max_c = self.temp_max
        conditions.gpu_power_limit_w = self.power_limit_w
        conditions.gpu_throttle_reasons = throttle_names(self.reasons)
        conditions.gpu_throttled_share = self.slowed / self.samples


class NvmlSampler:
    """Peak GPU memory of a process tree on each of its GPUs, sampled by the worker's watch loop."""

    def __init__(self, nvml: Any, handles: dict[str, Any]) -> None:
        self.nvml, self.handles = nvml, handles
        self.baseline = {g: nvml.nvmlDeviceGetMemoryInfo(h).used for g, h in handles.items()}
        self.process_peak = dict.fromkeys(handles, 0)
        self.device_peak = dict.fromkeys(handles, 0)
        self.attributed = False
        self.errors: set[str] = set()
        self.foreign: set[int] = set()  # other processes NVML saw on these GPUs during the trial
        # Every pid the trial's tree had: a DDP rank that ended is listed by NVML a while after it left
        # the tree (its context is torn down after its exit), and is the trial's, not another's.
        self.ours: set[int] = set()
        self.uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles.values()]
        self.energy_start = self._energy_mj()  # None: no counter (before Volta); integrate power instead
        self.energy_series: list[tuple[float, float]] = []  # (wall time, joules since launch)
        self.power = Trapezoid()  # watts summed over the GPUs -> joules
        self.util = Trapezoid()  # busy fraction summed over the GPUs -> GPU-seconds with a kernel running
        self.state = GpuState()  # of the first GPU: the one every GPU of a gang waits for is not known

    def _energy_mj(self) -> int | None:
        try:
            return sum(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles.values())
        except self.nvml.NVMLError:
            return None

    def _summed(self, read: Any) -> float | None:
        """`read(handle)` summed over the trial's GPUs; None (and the reason kept) if NVML refuses."""
        try:
            return float(sum(read(h) for h in self.handles.values()))
        except self.nvml.NVMLError as exc:
            self.errors.add(str(exc))
            return None

    def _sample_utilisation(self) -> None:
        busy = self._summed(lambda h: self.nvml.nvmlDeviceGetUtilizationRates(h).gpu)
        if busy is not None:
            self.util.add(busy / 100)

    def _sample_state(self, handle: Any) -> None:
        nvml = self.nvml
        try:
            sm = nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)
            mem = nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)
            temp = nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            mask = nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle)
        except nvml.NVMLError as exc:
            self.errors.add(str(exc))
            return
        try:
            limit = nvml.nvmlDeviceGetEnforcedPowerLimit(handle)
        except nvml.NVMLError:
            limit = None
        self.state.add(float(sm), float(mem), float(temp), limit, int(mask))

    def _process_used(self, handle: Any, pids: set[int]) -> int:
        used = 0
        for getter in (self.nvml.nvmlDeviceGetComputeRunningProcesses, self.nvml.nvmlDeviceGetGraphicsRunningProcesses):
            try:
                for proc in getter(handle):
                    if proc.pid not in pids:
                        if proc.pid not in self.ours:
                            self.foreign.add(proc.pid)
                    elif proc.usedGpuMemory is not None:
                        used += proc.usedGpuMemory
                        self.attributed = True
            except self.nvml.NVMLError as exc:
                self.errors.add(str(exc))
        return used

    def sample(self, tree: list[int]) -> None:
        pids = set(tree)
        self.ours |= pids
        for gpu, handle in self.handles.items():
            self.process_peak[gpu] = max(self.process_peak[gpu], self._process_used(handle, pids))
            device = self.nvml.nvmlDeviceGetMemoryInfo(handle).used - self.baseline[gpu]
            self.device_peak[gpu] = max(self.device_peak[gpu], device)
        self._sample_utilisation()
        self._sample_state(next(iter(self.handles.values())))
        if self.energy_start is None:
            milliwatts = self._summed(self.nvml.nvmlDeviceGetPowerUsage)
            if milliwatts is not None:
                self.power.add(milliwatts / 1000)
            self.energy_series.append((time.time(), self.power.total))
        else:
            now = self._energy_mj()
            if now is not None:
                self.energy_series.append((time.time(), (now - self.energy_start) / 1000))

    def energy_between(self, t0: float, t1: float) -> float | None:
        """Joules the GPUs used between two wall-clock times within the samples (interpolated)."""
        series = self.energy_series
        if len(series) < 2 or t0 < series[0][0] or t1 > series[-1][0]:
            return None
        return _at(series, t1) - _at(series, t0)

    def memory(self) -> GpuMemory:
        device = {g: max(0, v) / MIB for g, v in self.device_peak.items()}
        if self.attributed:
            per_gpu = {g: v / MIB for g, v in self.process_peak.items()}
            method = "nvml per-process (child process tree), peak per GPU summed"
        else:
            per_gpu = device
            method = "nvml device used minus pre-launch baseline (no per-process figures" + (
                f": {sorted(self.errors)[0]})" if self.errors else " for the child's pids)"
            )
        return GpuMemory(
            gpu_mem_peak_per_gpu_mib=[per_gpu[g] for g in self.handles],
            gpu_mem_peak_mib=sum(per_gpu.values()),
            gpu_device_mem_peak_mib=sum(device.values()),
            gpu_mem_method=method,
            # Only where NVML's pids are ours to compare (not in another pid namespace).
            gpu_foreign_pids=sorted(self.foreign) if self.attributed else None,
        )

    def utilisation(self) -> GpuUse:
        if self.util.span_s <= 0:
            return GpuUse()
        return GpuUse(
            gpu_util_pct=100 * self.util.total / (self.util.span_s * len(self.handles)),
            gpu_compute_s=self.util.total,
        )

    def energy(self) -> Energy:
        end = self._energy_mj() if self.energy_start is not None else None
        if self.energy_start is not None and end is not None:
            return Energy(energy_j=(end - self.energy_start) / 1000, energy_method="nvml total-energy counter")
        if self.power.samples >= 2:
            return Energy(
                energy_j=self.power.total, energy_method=f"nvml power integrated over {self.power.samples} samples"
            )
        return Energy(energy_method="unavailable (no energy counter, too few power samples)")


def _at(series: list[tuple[float, float]], t: float) -> float:
    """The cumulative energy at time t, linear between the two samples around it."""
    i = bisect.bisect_left(series, (t, float("-inf")))
    if i == 0:
        return series[0][1]
    (ta, ea), (tb, eb) = series[i - 1], series[min(i, len(series) - 1)]
    return ea if tb == ta else ea + (eb - ea) * (t - ta) / (tb - ta)


def card_memory_mib(gpu_ids: tuple[str, ...], given: float | None = None) -> float | None:
    """The memory of the (first) GPU for packing, MiB: `given` (--gpu-memory-mib) where set, else
    NVML's figure; None without GPUs or where NVML cannot tell (fake ids)."""
    if not gpu_ids:
        return None
    if given:
        return given
    try:
        nvml = _nvml()
        return float(nvml.nvmlDeviceGetMemoryInfo(_handle(nvml, gpu_ids[0])).total / MIB)
    except Exception:  # NVML missing, a fake GPU id: unknown
        return None


@dataclass
class GpuView:
    """What NVML gives an attempt: a sampler over its GPUs (none on CPU slots or where NVML cannot
    see them), the facts of the card, and why nothing is measured where that is so."""

    samplers: list[NvmlSampler] = field(default_factory=list)
    facts: GpuFacts = field(default_factory=GpuFacts)
    unavailable: str | None = None  # gpu_mem_method's text when NVML cannot be used

    @property
    def uuids(self) -> list[str]:
        return [uuid for sampler in self.samplers for uuid in sampler.uuids]


def visible_gpu_ids() -> list[str]:
    """This machine's GPUs as a local runner offers them: CUDA_VISIBLE_DEVICES where it is set, else
    every GPU NVML lists ([] without NVML or GPUs)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        return [str(i) for i in range(_nvml().nvmlDeviceGetCount())]
    except Exception:  # no NVML, no driver: no GPUs
        return []


def gpu_samplers(gpu_ids: tuple[str, ...]) -> GpuView:
    """Samplers for these GPUs, and the GPU facts (name, memory, driver, CUDA) for the row."""
    if not gpu_ids:
        return GpuView()
    try:
        nvml = _nvml()
        handles = {g: _handle(nvml, g) for g in gpu_ids}
        return GpuView([NvmlSampler(nvml, handles)], gpu_facts(nvml, handles))
    except Exception as exc:  # NVML missing, fake GPU ids, driver errors: measure nothing, say why
        return GpuView(unavailable=f"unavailable ({type(exc).__name__}: {exc})")
