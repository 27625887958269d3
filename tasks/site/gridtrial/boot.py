"""The trial bootstrap of one process: started by sitecustomize in every Python process of a
trial (or by the function runner), before the script or function runs.

- The backend's memory cap, at the only moment it works: jax's and mxnet's variables now (they
  are read when the framework starts, and children inherit them); tensorflow's logical devices
  right after `import tensorflow`; torch's `set_per_process_memory_fraction` when CUDA starts in
  this process, on the devices the process uses (its LOCAL_RANK, the device it selects, else the
  trial's first `gpus`). With a `backend`, only that framework is capped; without one, every
  framework the process imports. `memory_cap_method` records what each cap meant.
- Keras `fit`/`evaluate`/`predict` instrumented (keras_probe.py) once Keras is imported.
- What the process imported (versions, import time), its framework's peak device memory, any
  uncaught exception, and explicit reports, kept in this process's record (record.py: a
  ProcessRecord of the protocol, grid/protocol.py).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import traceback
from typing import Any

from gridtrial import current as this_process
from gridtrial import devmem, hooks, memcap, stacks
from gridtrial.protocol import (
    Cap,
    Compiles,
    Env,
    ErrorInfo,
    Exit,
    FrameworkMemory,
    StartedAs,
    TrialDocument,
)
from gridtrial.record import Record

FRAMEWORKS = ("tensorflow", "jax", "torch", "mxnet")
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
_start_lock = threading.Lock()


def _version(package: str) -> str | None:
    from importlib import metadata  # here, not at import: ~10-20 ms every trial process would pay

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def error_fields(exc: BaseException) -> ErrorInfo:
    """An exception as the record keeps it; grid decides whether it was an out-of-memory error."""
    return ErrorInfo(
        type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc)[-4000:],
        traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:],
        at=time.time(),
    )


class Boot:
    def __init__(self, trial: TrialDocument, started_as: StartedAs = StartedAs.FRESH):
        self.trial = trial
        self.config: dict[str, Any] = dict(trial.config)
        backend = self.config.get("backend")
        self.backend = backend if backend in FRAMEWORKS else None
        self.fraction = self.config.get("memory_fraction")
        self.gpu_ids = list(trial.gpu_ids)
        self.record = Record(trial.records_dir, started_as)
        self._spans: list[tuple[float, float]] = []
        self._modules: dict[str, Any] = {}
        self._env_caps: dict[str, str] = {}
        self._torch_capped: set[int] = set()
        self._torch_target = threading.local()
        # jax's persistent compilation cache in this process: compilations that asked it, answers, seconds saved
        self.compiles: Compiles | None = None
        self.sampler = stacks.start(trial.trial_id)  # only with GRID_PROFILE set
        self.pid = os.getpid()
        self._probe_steps = 0  # a search's probe: optimizer steps so far, and the peak at the last one
        self._probe_peak: float | None = None

    # -- which frameworks are capped, and how
    def caps(self, framework: str) -> bool:
        return self.backend is None or self.backend == framework

    def set_env_caps(self) -> None:
        """jax and mxnet read their allocator variables when they start: set them before any import."""
        cfg = self.config
        if self.caps("jax") and (self.fraction is not None or cfg.get("preallocate") is False):
            inherited = self.fraction is not None and f"{self.fraction:g}" in (
                os.environ.get("XLA_CLIENT_MEM_FRACTION"),
                os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
            )
            if self.backend == "jax" or inherited or _version("jaxlib") is not None:
                self._env_caps["jax"] = memcap.jax(
                    self.fraction, cfg.get("preallocate", True) is not False, self.gpu_ids
                )
        if self.caps("mxnet") and self.fraction is not None:
            self._env_caps["mxnet"] = memcap.mxnet(self.fraction, self.gpu_ids)

    # -- import hooks
    def _imported(self, name: str, module: Any, seconds: float) -> None:
        end = time.perf_counter()
        self._spans.append((end - seconds, end))
        self._modules[name] = module
        versions = {name: getattr(module, "__version__", None) or _version(name)}
        if name == "jax":
            versions["jaxlib"] = _version("jaxlib")
        if name == "torch":
            versions["cuda"] = getattr(module.version, "cuda", None)
        if "numpy" in sys.modules:
            versions["numpy"] = getattr(sys.modules["numpy"], "__version__", None)
        with self.record.edit() as record:
            record.versions.update({k: _text(v) for k, v in versions.items()})
            record.import_s = self.import_s()
            if name in FRAMEWORKS and self.caps(name):
                record.caps[name] = Cap(self._env_caps.get(name, memcap.DEFAULT))
        self._exit_last()

    def _exit_last(self) -> None:
        """Run the exit handler before the frameworks' own (atexit runs the last registered first;
        jax's clean-up, registered at its import, would take its memory counters away)."""
        atexit.unregister(self.finish)
        atexit.register(self.finish)

    def import_s(self) -> float:
        """Seconds spent importing frameworks, nested imports (keras importing jax) counted once."""
        total, until = 0.0, float("-inf")
        for start, end in sorted(self._spans):
            total += max(0.0, end - max(start, until))
            until = max(until, end)
        return total

    def on_tensorflow(self, tf, seconds: float) -> None:
        self._imported("tensorflow", tf, seconds)
        try:
            versions = {"cuda": tf.sysconfig.get_build_info().get("cuda_version")}
        except Exception:
            versions = {}
        with self.record.edit() as record:
            record.versions.update({k: _text(v) for k, v in versions.items()})
        if self.caps("tensorflow"):
            method = memcap.tensorflow(
                tf, self.fraction, bool(self.config.get("memory_growth")), self.gpu_ids, self.trial.gpu_total_mib
            )
            with self.record.edit() as record:
                record.caps["tensorflow"] = Cap(method)

    def on_torch(self, torch, seconds: float) -> None:
        self._imported("torch", torch, seconds)
        if not self.caps("torch") or self.fraction is None:
            return
        if not self.gpu_ids:
            with self.record.edit() as record:
                record.caps["torch"] = Cap(memcap.torch_method(self.fraction, None), gpu_started=False)
            return
        with self.record.edit() as record:
            record.caps["torch"] = Cap(
                f"torch: set_per_process_memory_fraction({self.fraction:g}) when "
                f"CUDA starts (it did not start in this process)",
                gpu_started=False,
            )
        self._patch_set_device(torch)
        lazy = getattr(torch.cuda, "_lazy_call", None)
        if lazy is None:  # a torch without lazy init calls: cap now (this starts CUDA)
            self._cap_torch(torch)
        else:
            lazy(lambda: self._cap_torch(torch))

    def _patch_set_device(self, torch) -> None:
        """A process that picks its device (a DDP rank) gets the cap on that device, not on device 0."""
        original = torch.cuda.set_device

        def set_device(device):
            index = device if isinstance(device, int) else torch.device(device).index
            self._torch_target.index = index
            try:
                original(device)
            finally:
                self._torch_target.index = None
            if index is not None and index not in self._torch_capped and torch.cuda.is_initialized():
                self._cap_torch(torch, [index])

        torch.cuda.set_device = set_device

    def _cap_torch(self, torch, devices: list[int] | None = None) -> None:
        if os.getpid() != self.pid:
            return  # a forked child's CUDA: its own bootstrap caps it (start_in_fork)
        if devices is None:
            target = getattr(self._torch_target, "index", None)
            local = os.environ.get("LOCAL_RANK")
            if target is not None:
                devices = [target]
            elif local is not None and local.isdigit():
                devices = [int(local)]
            else:
                devices = list(range(min(int(self.config.get("gpus") or 1), torch.cuda.device_count())))
        devices = [d for d in devices if d not in self._torch_capped]
        memcap.torch(torch, self.fraction, devices)
        self._torch_capped.update(devices)
        with self.record.edit() as record:
            record.caps["torch"] = Cap(memcap.torch_method(self.fraction, len(self._torch_capped)), gpu_started=True)

    def on_jax(self, jax, seconds: float) -> None:
        self._imported("jax", jax, seconds)
        self._count_compiles()

    def _count_compiles(self) -> None:
        """Listen to jax's compilation-cache events: a compilation that asked the cache and was not
        answered was compiled cold (and written to it)."""
        try:
            from jax import monitoring
        except ImportError:
            return
        counts = self.compiles = Compiles(requests=0, hits=0, saved_s=0.0)

        def on_event(event: str, **_: Any) -> None:
            if event == "/jax/compilation_cache/compile_requests_use_cache":
                counts.requests += 1
            elif event == "/jax/compilation_cache/cache_hits":
                counts.hits += 1

        def on_duration(event: str, duration: float, **_: Any) -> None:
            if event == "/jax/compilation_cache/compile_time_saved_sec":
                counts.saved_s = (counts.saved_s or 0.0) + duration

        monitoring.register_event_listener(on_event)
        monitoring.register_event_duration_secs_listener(on_duration)

    def on_mxnet(self, mx, seconds: float) -> None:
        self._imported("mxnet", mx, seconds)

    def on_keras(self, keras, seconds: float) -> None:
        self._imported("keras", keras, seconds)
        env = os.environ.get("KERAS_BACKEND")
        if self.backend in KERAS_BACKENDS and env != self.backend:
            raise RuntimeError(
                f"the trial's backend is {self.backend!r} but KERAS_BACKEND={env!r} in this process; "
                f"keras picks its backend from KERAS_BACKEND at import, so run the trial with "
                f"KERAS_BACKEND={self.backend} (grid sets it from the trial's config)"
            )
        from gridtrial import keras_probe

        keras_probe.install(keras, sys.modules["numpy"], self)

    def on_lightning(self, module, seconds: float) -> None:
        """lightning.pytorch or pytorch_lightning: its Trainer gets gpu-grid's callback."""
        from gridtrial import lightning_probe

        package = module.__name__.split(".")[0]
        self._imported(package, module, seconds)
        lightning_probe.install(module)

    def on_transformers_trainer(self, module, seconds: float) -> None:
        """transformers.trainer (imported when a script first touches `transformers.Trainer`)."""
        from gridtrial import hf_probe

        self._imported("transformers", sys.modules.get("transformers", module), seconds)
        hf_probe.install(module)

    def on_dataloader(self, module, seconds: float) -> None:
        """torch.utils.data.dataloader: a plain loop's full passes with gradients on are its epochs."""
        from gridtrial import loader_probe

        loader_probe.install(sys.modules["torch"], module)

    # -- a search's probe: ended once its memory is known
    def probe_step(self) -> None:
        """An optimizer step of a training loop gpu-grid hooks. A probe (the trial document's
        `stop_after_steps`) ends after that many steps, once the framework's peak stopped growing
        from one step to the next (at most 4 times as many): what it is for, its memory, is known.
        The peak is read from the step before the limit on, so a peak already settled ends it there."""
        limit = self.trial.stop_after_steps
        if not limit or os.getpid() != self.pid:
            return
        self._probe_steps += 1
        if self._probe_steps < limit - 1:
            return
        peak = self._peak_now()
        grown = peak is not None and (self._probe_peak is None or peak > self._probe_peak)
        settled = self._probe_steps >= limit and not grown
        self._probe_peak = peak
        if settled or self._probe_steps >= 4 * limit:
            self._end_probe()

    def _peak_now(self) -> float | None:
        peaks = []
        for name in FRAMEWORKS:
            module = self._modules.get(name)
            if module is not None:
                with contextlib.suppress(Exception):
                    found = devmem.peak_now(name, module, bool(self.gpu_ids))
                    if found is not None and found[0] is not None:
                        peaks.append(found[0])
        return sum(peaks) if peaks else None

    def _end_probe(self) -> None:
        from gridtrial import leave

        with self.record.edit() as record:
            record.stopped_after_steps = self._probe_steps
        self.after_loop_call()
        time.sleep(2 * self.trial.sample_interval_ms / 1000)  # the worker's NVML samples see this memory
        print(
            f"[gpu-grid] probe: stopped after {self._probe_steps} optimizer steps, its memory known",
            file=sys.stderr,
            flush=True,
        )
        leave.leave(Exit.OK)

    # -- measurements kept
    def read_memory(self) -> None:
        for name in FRAMEWORKS:
            module = self._modules.get(name)
            if module is None:
                continue
            try:
                found = devmem.peak_now(name, module, bool(self.gpu_ids))
            except Exception as exc:
                found = (None, {"error": f"{type(exc).__name__}: {exc}"})
            if found is not None:
                peak, detail = found
                with self.record.edit() as record:
                    record.memory[name] = FrameworkMemory(peak, detail)

    def after_loop_call(self) -> None:
        """Keep what was measured now (a process killed later still leaves it)."""
        self.read_memory()
        self.keep_compiles()
        self.record.write()
        self._exit_last()

    def compile_counts(self) -> Compiles | None:
        """This process's compilations that asked a persistent cache so far, and its answers: jax's
        (its monitoring events, counted as they come) and torch.compile's (inductor's FX graph cache
        counters, read now; a graph the cache cannot hold counts as compiled cold). None: neither."""
        jax = self.compiles
        counts = None if jax is None else Compiles(jax.requests, jax.hits, jax.saved_s)
        dynamo = sys.modules.get("torch._dynamo.utils")  # imported by torch.compile, never by us
        inductor = getattr(dynamo, "counters", {}).get("inductor") or {}
        hits = inductor.get("fxgraph_cache_hit", 0)
        asked = hits + inductor.get("fxgraph_cache_miss", 0) + inductor.get("fxgraph_cache_bypass", 0)
        if asked:
            counts = counts or Compiles()
            counts.requests += asked
            counts.hits += hits
        return counts

    def keep_compiles(self) -> None:
        counts = self.compile_counts()
        if counts is not None:
            with self.record.edit() as record:
                record.compiles = counts

    def finish(self) -> None:
        if os.getpid() != self.pid:
            return  # a bare os.fork() of this process exiting: this record and profile are its parent's
        self.read_memory()
        self.keep_compiles()
        imported = imported_packages([self.trial.workdir, os.path.dirname(os.path.abspath(sys.argv[0]))])
        with self.record.edit(worth_writing=bool(imported)) as record:  # what a warm parent would import
            record.imported = imported
        self.record.write()
        if self.sampler is not None:
            self.sampler.write()

    def fail(self, exc: BaseException) -> None:
        """Keep an exception that will not reach this process's excepthook (a forked DDP rank's
        error goes back to the trial process through torch.multiprocessing) and write the record."""
        self.keep_error(exc)
        self.finish()

    def keep_error(self, exc: BaseException) -> None:
        with self.record.edit() as record:
            record.error = error_fields(exc)

    def excepthook(self, previous):
        def hook(kind, value, tb):
            self.keep_error(value)
            self.record.write()
            previous(kind, value, tb)

        return hook

    def install(self) -> None:
        self.set_env_caps()
        hooks.install(
            {
                "tensorflow": self.on_tensorflow,
                "torch": self.on_torch,
                "jax": self.on_jax,
                "mxnet": self.on_mxnet,
                "keras": self.on_keras,
                "lightning.pytorch": self.on_lightning,
                "pytorch_lightning": self.on_lightning,
                "transformers.trainer": self.on_transformers_trainer,
                "torch.utils.data.dataloader": self.on_dataloader,
            }
        )
        sys.excepthook = self.excepthook(sys.excepthook)
        atexit.register(self.finish)


def imported_packages(own: list[str | None]) -> list[str]:
    """The top-level packages this process imported, in the order first imported: not the standard
    library's, not gpu-grid's bootstrap, not the trial's own files (under its workdir or its script's
    folder, unless installed there in a site-packages). What a warm parent may import for the next
    trial of the same script."""
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    folders = [os.path.abspath(d) + os.sep for d in own if d]
    out: dict[str, None] = {}
    for name in list(sys.modules):
        top = name.partition(".")[0]
        if top in out or top in stdlib or top.startswith("_") or top in ("gridtrial", "sitecustomize", "__main__"):
            continue
        path = getattr(sys.modules.get(top), "__file__", None)
        if not path:
            continue  # a built-in or namespace package: nothing to import ahead
        path = os.path.abspath(path)
        if "site-packages" not in path and any(path.startswith(f) for f in folders):
            continue
        out[top] = None
    return list(out)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _read_trial(path: str) -> TrialDocument:
    with open(path) as f:
        return TrialDocument.from_json(f.read())


def start(trial_path: str | None = None, started_as: StartedAs = StartedAs.FRESH) -> Boot:
    """Start the bootstrap in this process once; `trial_path` defaults to $GRID_TRIAL."""
    with _start_lock:
        started = this_process.bootstrap()
        if started is None:
            path = trial_path or os.environ[Env.TRIAL]
            trial = _read_trial(path)
            # This process's children start the bootstrap too (a trial run by hand, without grid).
            os.environ[Env.TRIAL] = os.path.abspath(path)
            site = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            if site not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
                os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (site, os.environ.get("PYTHONPATH")) if p)
            started = Boot(trial, started_as)
            this_process.keep(started)  # kept even if install fails: its record says why (start_or_exit)
            started.install()
        return started


def start_in_fork(started_as: StartedAs = StartedAs.FORK) -> Boot | None:
    """Make a process forked from a trial process (a DDP rank that the built-in torch workload forks)
    a trial process of its own, as a spawned one would be: its own record, memory cap (with its
    LOCAL_RANK) and exit handler; the parent's bootstrap, inherited, stays inert here (its record is
    written and its cap applied only in the process it started in). Returns the new bootstrap, or
    None where there is nothing to do: no trial, or this process's own bootstrap (a spawned rank)."""
    with _start_lock:
        inherited = this_process.bootstrap()
        if inherited is None or inherited.pid == os.getpid():
            return None
        atexit.unregister(inherited.finish)
        this_process.keep(None)
    numpy = sys.modules.get("numpy")
    if numpy is not None:  # fresh, as a spawned process's (Python's random reseeds itself at fork)
        numpy.random.seed()
    start_or_exit(started_as)
    return this_process.bootstrap()


def start_or_exit(started_as: StartedAs = StartedAs.FRESH, since: float | None = None) -> None:
    """Start the bootstrap of a trial's process (sitecustomize, a warm parent's child); a failure
    ends the process (Exit.BOOTSTRAP_FAILED): running on without the cap would make an uncapped run
    look capped. `since`: when gpu-grid's work in this process began (perf_counter), for boot_s."""
    t0 = time.perf_counter() if since is None else since
    try:
        started = start(None, started_as)
        with started.record.edit(worth_writing=False) as record:
            record.boot_s = time.perf_counter() - t0
    except Exception as exc:
        started = this_process.bootstrap()
        if started is not None:  # a framework imported already (a warm start) fails here, not at its import
            started.keep_error(exc)
            started.record.write()
        print(
            f"[gpu-grid] trial bootstrap failed in pid {os.getpid()}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(Exit.BOOTSTRAP_FAILED) from None


def current() -> Boot | None:
    return this_process.bootstrap()
