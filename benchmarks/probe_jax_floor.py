"""What a ResNet-50 jax trial costs beyond its steady epochs, and how much of it any process model pays.

    python benchmarks/probe_jax_floor.py OUT.json [--cache DIR] [--variants A,B] [--preload]

A GPU experiment for issue 13's jax target. A parent imports numpy, jax and keras (as gpu-grid's
warm parent does) and forks children one after the other; each child runs the built-in workload's
model (`keras_common.compile_model`, batch 128, 3 epochs of 3,200 images) and times its phases, with
jax's own monitoring events (tracing, lowering to MLIR, backend compile, cache retrieval) summed
per phase. Children:

- `fill`: the first trial compiles cold and fills the persistent cache.
- `fork`: one trial per forked process, the cache loaded: what gpu-grid's warm start pays.
- `reuse`: three trials in one process (`keras.backend.clear_session()` between): trials 2 and 3
  are what a process reused between trials (Ray Tune's `reuse_actors`) pays, the floor of any
  design that builds a new model per trial.
- `seeds`: before its trial, 160 small host-to-device copies like the ones Keras makes for its
  initialisers' seeds, timed alone (is the copy slow, or what it waits for?).
- `cmdbuf_off` (twice: the first compiles, the flags change the cache key): XLA's command buffers
  (CUDA graphs) off, to see what the first execution's graph capture costs.
- `gc_relaxed`: the collector's thresholds raised in the trial process.
- `fork@F`: a forked trial with XLA_CLIENT_MEM_FRACTION=F (jax preallocates that fraction).

`--preload`: the parent also loads jax's CUDA plugin and NVIDIA's libraries before forking, without
starting CUDA (`preload_jax_cuda` below); run it beside a parent without, alternating.

Every child times its first transfer to the GPU on its own (`first_allocation_s`): jax's
preallocation of its memory fraction happens there (benchmarks/probe_first_allocation.py).

Nothing here is a gpu-grid default; the figures go into docs/results/jax-floor/.
"""

from __future__ import annotations

import ctypes
import gc
import glob
import importlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict

EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile_or_load",
    "/jax/compilation_cache/cache_retrieval_time_sec": "cache_load",
}


class Events:
    """jax's duration events, summed and maxed per phase (tracing nests: max is the outer one)."""

    def __init__(self) -> None:
        self.phase = "backend"
        self.sums: dict = defaultdict(lambda: defaultdict(float))
        self.maxes: dict = defaultdict(lambda: defaultdict(float))
        self.counts: dict = defaultdict(lambda: defaultdict(int))

    def __call__(self, event: str, duration: float, **_: object) -> None:
        name = EVENTS.get(event)
        if name:
            self.sums[self.phase][name] += duration
            self.maxes[self.phase][name] = max(self.maxes[self.phase][name], duration)
            self.counts[self.phase][name] += 1

    def take(self) -> dict:
        out = {
            phase: {
                name: {"sum_s": self.sums[phase][name], "max_s": self.maxes[phase][name], "n": self.counts[phase][name]}
                for name in self.sums[phase]
            }
            for phase in list(self.sums)
        }
        self.sums.clear()
        self.maxes.clear()
        self.counts.clear()
        return out


def trial(keras, events: Events) -> dict:
    from tasks import data, keras_common, keras_resnet50

    ds = data.synthetic(int(os.environ.get("PROBE_IMAGES", "3200")))
    t0 = time.time()
    events.phase = "build"
    model = keras_common.compile_model(keras, keras_resnet50, {})
    t_build = time.time()
    stamps: list[float] = []

    class Stamp(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            stamps.append(time.time())
            events.phase = "later_epochs"

    events.phase = "first_epoch"
    model.fit(ds.x, ds.y, batch_size=128, epochs=3, verbose=0, callbacks=[Stamp()])
    steady = stamps[2] - stamps[1]
    first = stamps[0] - t_build
    return {
        "build_s": t_build - t0,
        "first_epoch_s": first,
        "steady_epoch_s": steady,
        "first_excess_s": first - steady,
        "build_plus_first_excess_s": (t_build - t0) + first - steady,
        "events": events.take(),
    }


def _dlopen(path: str, loaded: list[str]) -> None:
    try:
        ctypes.CDLL(path)
    except OSError:
        return  # the plugin's own loader decides later what a missing library means
    loaded.append(os.path.basename(path))


def preload_jax_cuda() -> dict:
    """Load in this process what jax's CUDA plugin loads when the backend starts, without starting it: NVIDIA's
    libraries (the plugin's own list), cuDNN's sub-libraries (cuDNN opens them on first use), the
    plugin's extension modules and the plugin itself. Nothing is loaded where no jax CUDA plugin is
    installed (a CPU box). Returns what was loaded and how long it took."""
    t0 = time.perf_counter()
    loaded: list[str] = []
    for name in ("jax_plugins.xla_cuda13", "jax_plugins.xla_cuda12"):
        try:
            plugin = importlib.import_module(name)
        except ImportError:
            continue
        if not hasattr(plugin, "_load_nvidia_libraries"):
            continue
        before = _loaded_paths()
        plugin._load_nvidia_libraries()  # dlopen only: what initialize() does first
        loaded += sorted(os.path.basename(p) for p in _loaded_paths() - before)
        if hasattr(plugin, "_import_extensions"):
            plugin._import_extensions()
        for cudnn in _cudnn_sublibraries():
            _dlopen(cudnn, loaded)
        library = plugin._get_library_path() if hasattr(plugin, "_get_library_path") else None
        if library:
            _dlopen(str(library), loaded)
        _dlopen("libcuda.so.1", loaded)
        break
    return {"loaded": loaded, "seconds": time.perf_counter() - t0}


def _cudnn_sublibraries() -> list[str]:
    try:
        cudnn = importlib.import_module("nvidia.cudnn")
    except ImportError:
        return []
    paths: list[str] = []
    for folder in getattr(cudnn, "__path__", []):
        paths += sorted(glob.glob(os.path.join(folder, "lib", "libcudnn_*.so.*")))
    return paths


def _loaded_paths() -> set[str]:
    """The shared objects mapped into this process (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            return {line.split()[-1] for line in maps if ".so" in line and "/" in line}
    except OSError:
        return set()


def seeds_probe(n: int = 160) -> dict:
    import jax
    import jax.numpy as jnp

    t0 = time.perf_counter()
    arrays = [jnp.asarray([i, 0], dtype="uint32") for i in range(n)]
    t1 = time.perf_counter()
    jax.block_until_ready(arrays)
    t2 = time.perf_counter()
    arrays = [jnp.asarray([i, 0], dtype="uint32") for i in range(n)]
    jax.block_until_ready(arrays)
    t3 = time.perf_counter()
    return {"first_n_s": t1 - t0, "first_wait_s": t2 - t1, "second_n_s": t3 - t2, "n": n}


def child(variant: str, out_fd: int) -> None:
    if variant.startswith("cmdbuf_off"):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_enable_command_buffer=").strip()
    if variant == "gc_relaxed":
        gc.set_threshold(100_000, 50, 1_000)
    if "@" in variant:  # fork@0.1: a trial capped at that fraction (preallocated, as jax does by default)
        os.environ["XLA_CLIENT_MEM_FRACTION"] = variant.split("@", 1)[1]
    import jax
    import keras
    import numpy

    events = Events()
    jax.monitoring.register_event_duration_secs_listener(events)
    result: dict = {"variant": variant}
    t0 = time.time()
    jax.devices()
    result["backend_start_s"] = time.time() - t0
    t0 = time.time()
    jax.device_put(numpy.zeros(2, numpy.uint32)).block_until_ready()
    result["first_allocation_s"] = time.time() - t0  # the preallocation: cudaMalloc of the whole fraction
    if variant == "seeds":
        result["seeds"] = seeds_probe()
    trials = 3 if variant == "reuse" else 1
    result["trials"] = []
    for i in range(trials):
        if i:
            keras.backend.clear_session()
            gc.collect()
        result["trials"].append(trial(keras, events))
    os.write(out_fd, (json.dumps(result) + "\n").encode())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_child(variant: str) -> dict:
    r, w = os.pipe()
    t0 = time.time()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            child(variant, w)
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(1)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    result = json.loads(text.splitlines()[0]) if text.strip() else {"variant": variant}
    result.update(exit_code=os.waitstatus_to_exitcode(status), process_s=time.time() - t0)
    return result


def summary(result: dict) -> str:
    parts = [
        f"{result['variant'] + ('+preload' if result.get('parent_preloaded') else ''):<20}"
        f" backend {result.get('backend_start_s', float('nan')):.2f}"
        f" first allocation {result.get('first_allocation_s', float('nan')):.2f}"
    ]
    for i, t in enumerate(result.get("trials", [])):
        first = t["events"].get("first_epoch", {})

        def get(name: str, key: str = "sum_s", first: dict = first) -> float:
            return first.get(name, {}).get(key, 0.0)

        parts.append(
            f"[{i + 1}] build {t['build_s']:.2f} first+ {t['first_excess_s']:.2f} (trace {get('trace', 'max_s'):.2f}"
            f" lower {get('lower', 'max_s'):.2f} load {get('cache_load'):.2f}"
            f" compile/load {get('compile_or_load'):.2f}) steady {t['steady_epoch_s']:.2f}"
        )
    if "seeds" in result:
        s = result["seeds"]
        parts.append(f"seeds {s['first_n_s']:.3f}+{s['first_wait_s']:.3f} then {s['second_n_s']:.3f}")
    return " ".join(parts)


def main() -> None:
    out = sys.argv[1]
    cache = sys.argv[sys.argv.index("--cache") + 1] if "--cache" in sys.argv else tempfile.mkdtemp(prefix="jaxcache-")
    os.environ.update(
        KERAS_BACKEND="jax",
        JAX_ENABLE_COMPILATION_CACHE="true",
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    import jax
    import jax.numpy  # noqa: F401
    import keras  # noqa: F401
    import numpy  # noqa: F401

    from tasks import data, keras_common, keras_resnet50  # noqa: F401

    preload = None
    if "--preload" in sys.argv:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tasks", "site"))
        from gridtrial.cudadriver import cuda_driver_started

        preload = preload_jax_cuda()
        preload["cuda_driver_started"] = cuda_driver_started()
        print(f"preloaded {len(preload['loaded'])} libraries in {preload['seconds']:.2f} s: {preload}", flush=True)
        if preload["cuda_driver_started"]:
            sys.exit("the preload started the CUDA driver: forked children would fail")
    gc.collect()
    gc.freeze()
    variants = sys.argv[sys.argv.index("--variants") + 1].split(",") if "--variants" in sys.argv else None
    variants = variants or ["fill", "fork", "fork", "reuse", "seeds", "gc_relaxed", "cmdbuf_off_fill", "cmdbuf_off"]
    runs = []
    for variant in variants:
        runs.append(run_child(variant))
        runs[-1]["parent_preloaded"] = preload is not None
        print(summary(runs[-1]), flush=True)
        with open(out, "w") as f:
            json.dump({"preload": preload, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
