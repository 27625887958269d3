"""The persistent compilation cache the trials of a sweep share on each node.

Every trial of a grid compiles much the same program (ResNet-50's train step, per batch size and
backend); compiling it once per node and loading it afterwards takes seconds off each trial's
first epoch. jax's cache is the one that matters (Keras on jax compiles every step function);
TensorFlow's XLA cache and torch.compile's (inductor, triton) share the folder where a script
uses them. `compile_cache: false` (a param or an axis) turns them off to measure cold compiles.

Each row says what its first epoch did in the `compile` column: `cold` (something was compiled and
written to the cache), `cached` (every compilation came from it), `off`, or null where nothing
compiled through a cache gpu-grid can see: jax's (its monitoring events) and torch.compile's
(inductor's FX graph cache counters) are counted; TensorFlow's XLA cache is shared but not counted.
"""

from __future__ import annotations

import os
from typing import Any

from grid.protocol import ProcessRecord
from grid.results.row import Start

ON_DEFAULT = True


def folder(state_dir: str, sweep: str) -> str:
    """This node's cache for a sweep, under the machine's state folder (--state-dir)."""
    return os.path.join(state_dir, "compile-cache", sweep)


def enabled(config: dict[str, Any]) -> bool:
    return config.get("compile_cache", ON_DEFAULT) is not False


def environment(config: dict[str, Any], root: str | None) -> dict[str, str]:
    """The variables that point the frameworks at the cache (or turn their caches off)."""
    if not enabled(config) or root is None:
        return {"JAX_ENABLE_COMPILATION_CACHE": "false", "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
    xla_flags = os.environ.get("TF_XLA_FLAGS", "")
    return {
        "JAX_ENABLE_COMPILATION_CACHE": "true",
        "JAX_COMPILATION_CACHE_DIR": os.path.join(root, "jax"),
        # every compilation, however quick or small: the first epoch is many of them
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "TF_XLA_FLAGS": f"{xla_flags} --tf_xla_persistent_cache_directory={os.path.join(root, 'tensorflow')}".strip(),
        "TORCHINDUCTOR_CACHE_DIR": os.path.join(root, "inductor"),
        "TRITON_CACHE_DIR": os.path.join(root, "triton"),
    }


def first_epoch_state(record: ProcessRecord | None, config: dict[str, Any]) -> Start:
    """The row's `compile` (cold, cached, off or None) and `compile_saved_s` from the process that
    trained: its compilations up to the end of its first epoch (the whole process without epochs)."""
    if not enabled(config):
        return Start(compile="off")
    counts = record.compiles if record is not None else None
    for fit in record.fits if record is not None else []:
        if fit.epochs and fit.epochs[0].compiles is not None:
            counts = fit.epochs[0].compiles
            break
    if counts is None or not counts.requests:
        return Start()
    return Start(compile="cached" if counts.hits >= counts.requests else "cold", compile_saved_s=counts.saved_s)
