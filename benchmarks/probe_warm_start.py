"""Where a warm-started ResNet-50 trial spends its fixed overhead, phase by phase (a GPU experiment).

    python benchmarks/probe_warm_start.py jax|torch OUT.json [--cache DIR]

A parent imports numpy, the framework and keras (as gpu-grid's warm parent does), then forks one
child per variant, one after the other; each child times its phases (backend start, model build,
each epoch of `fit`, its exit handlers) and the parent times the child's whole life and its exit.
Variants: `base` (as gpu-grid does today), `preload` (the parent has also loaded the framework's
CUDA libraries with dlopen, without starting CUDA), `fast_exit` (the child leaves with os._exit
after flushing), `skip_finalize` (the exit handlers run, then os._exit skips the interpreter's
teardown). The first child of a jax run compiles cold and fills the cache; the rest load it.
The figures decide what gpu-grid's warm start does; they are written to OUT.json.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import sys
import tempfile
import time


def open_gpu_files() -> list[str]:
    """/dev/nvidia* files this process has open: any means the CUDA driver started here."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/dev/nvidia"):
            found.append(target)
    return found


def cuda_libraries(backend: str) -> list[str]:
    """The shared libraries the framework loads when its GPU backend starts."""
    site = os.path.dirname(os.path.dirname(os.path.abspath(__import__("numpy").__file__)))
    libs = sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib", "*.so*")))
    if backend == "jax":
        libs += sorted(glob.glob(os.path.join(site, "jax_plugins", "*", "*.so")))
    return libs


def preload(backend: str) -> dict:
    t0 = time.perf_counter()
    loaded, failed = [], []
    for path in cuda_libraries(backend):
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            loaded.append(os.path.basename(path))
        except OSError as exc:
            failed.append(f"{os.path.basename(path)}: {exc}")
    return {"preload_s": time.perf_counter() - t0, "loaded": loaded, "failed": failed, "gpu_files": open_gpu_files()}


def child(backend: str, variant: str, out_fd: int) -> None:
    marks: dict[str, float] = {"start": time.time()}
    import keras

    from tasks import data, keras_common, keras_resnet50

    ds = data.synthetic(int(os.environ.get("PROBE_IMAGES", "3200")))
    x, y = ds.x, ds.y
    marks["data"] = time.time()
    if backend == "jax":
        import jax

        jax.devices()
    else:
        import torch

        torch.zeros(1, device="cuda")
    marks["backend"] = time.time()
    model = keras_common.compile_model(keras, keras_resnet50, {})  # the built-in workload's model and optimizer
    marks["build"] = time.time()
    epochs: list[float] = []

    class Stamp(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            epochs.append(time.time())

    model.fit(x, y, batch_size=128, epochs=3, verbose=0, callbacks=[Stamp()])
    marks["fit"] = time.time()
    marks["epochs"] = epochs  # type: ignore[assignment]

    def report():
        marks["exit_handlers_done"] = time.time()
        os.write(out_fd, (json.dumps(marks) + "\n").encode())

    import atexit

    atexit.register(report)  # registered last, so it runs first: exit_s is the frameworks' teardown
    if variant.endswith("fast_exit"):  # no exit handlers, no teardown
        report()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    if variant.endswith("skip_finalize"):  # every exit handler, then no interpreter teardown
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    sys.exit(0)


def run_child(backend: str, variant: str) -> dict:
    r, w = os.pipe()
    t0 = time.time()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            child(backend, variant, w)
        except SystemExit:
            raise
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(1)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    end = time.time()
    text = os.read(r, 1 << 16).decode()
    os.close(r)
    marks = json.loads(text.splitlines()[0]) if text.strip() else {}
    result = {"variant": variant, "exit_code": os.waitstatus_to_exitcode(status), "held_s": end - t0}
    if marks:
        e = marks["epochs"]
        steady = e[2] - e[1]
        result.update(
            to_child_start_s=marks["start"] - t0,
            import_and_data_s=marks["data"] - marks["start"],
            backend_start_s=marks["backend"] - marks["data"],
            model_build_s=marks["build"] - marks["backend"],
            first_epoch_s=e[0] - marks["build"],
            second_epoch_s=e[1] - e[0],
            steady_epoch_s=steady,
            after_fit_to_handlers_done_s=marks["exit_handlers_done"] - marks["fit"],
            exit_s=end - marks["exit_handlers_done"],
            overhead_s=(end - t0) - 3 * steady,
        )
    return result


def main() -> None:
    backend, out = sys.argv[1], sys.argv[2]
    cache = sys.argv[sys.argv.index("--cache") + 1] if "--cache" in sys.argv else tempfile.mkdtemp(prefix="jaxcache-")
    os.environ.update(
        KERAS_BACKEND=backend,
        JAX_ENABLE_COMPILATION_CACHE="true",
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    if backend == "torch":
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    t0 = time.perf_counter()
    import numpy  # noqa: F401

    if backend == "jax":
        import jax
        import jax.numpy  # noqa: F401
    else:
        import torch  # noqa: F401
    import keras  # noqa: F401

    results: dict = {
        "backend": backend,
        "parent_import_s": time.perf_counter() - t0,
        "gpu_files_after_import": open_gpu_files(),
    }
    runs = []
    runs.append(run_child(backend, "base"))  # jax: compiles cold, fills the cache
    for variant in ("base", "fast_exit", "skip_finalize", "base"):
        runs.append(run_child(backend, variant))
    results["preload"] = preload(backend)
    for variant in ("preload", "preload", "preload+skip_finalize"):
        runs.append(run_child(backend, variant))
    results["runs"] = runs
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    for r in runs:
        print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
