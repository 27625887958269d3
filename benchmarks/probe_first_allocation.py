"""What a jax process's first transfers to the GPU cost, by memory setting (a GPU experiment).

    python benchmarks/probe_first_allocation.py VARIANT CACHE_DIR

VARIANT: `base` (jax's default: preallocate 75% of the card), `noprealloc`
(XLA_PYTHON_CLIENT_PREALLOCATE=false), `nocache` (no persistent compilation cache),
`device_put_first` (a plain device_put before jnp.asarray), or `fraction=F`
(XLA_CLIENT_MEM_FRACTION=F, preallocated). After the backend starts, it times 160 small
host-to-device copies like the ones Keras makes for its initialisers' seeds, call by call, then
160 more, with jax's compile events of each loop. Found with it (docs/results/jax-floor/): the first
copy in a process waits for the preallocation (cudaMalloc of the whole fraction), ~0.75 s for 75%
of an H100's 80 GB; the copies themselves take ~0.1-0.3 ms.
"""

import collections
import os
import sys
import time

variant = sys.argv[1]
os.environ.update(
    KERAS_BACKEND="jax",
    JAX_ENABLE_COMPILATION_CACHE="true",
    JAX_COMPILATION_CACHE_DIR=sys.argv[2],
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
)
if variant == "noprealloc":
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
if variant == "nocache":
    os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
if variant.startswith("fraction="):
    os.environ["XLA_CLIENT_MEM_FRACTION"] = variant.split("=", 1)[1]

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

events: collections.Counter = collections.Counter()
durations: collections.Counter = collections.Counter()
jax.monitoring.register_event_listener(lambda e, **k: events.__setitem__(e, events[e] + 1))
jax.monitoring.register_event_duration_secs_listener(lambda e, d, **k: durations.__setitem__(e, durations[e] + d))
t = time.perf_counter()
jax.devices()
print(variant, "backend", round(time.perf_counter() - t, 3))


def loop(label, fn, n=160):
    events.clear()
    durations.clear()
    ts = []
    for i in range(n):
        t = time.perf_counter()
        jax.block_until_ready(fn(i))
        ts.append(time.perf_counter() - t)
    ms = lambda xs: [round(x * 1e3, 2) for x in xs]  # noqa: E731
    print(f"  {label}: total {sum(ts):.3f} s, ms: first5 {ms(ts[:5])} mid {ms(ts[80:83])} last3 {ms(ts[-3:])}")
    print("    events", dict(events), {k.split("/")[-1]: round(v, 3) for k, v in durations.items()}, flush=True)


big = 2**31 + 12345
if variant == "device_put_first":
    loop("device_put np", lambda i: jax.device_put(np.array([i, 0], np.uint32)))
loop("asarray list", lambda i: jnp.asarray([big + i, 0], dtype="uint32"))
loop("asarray list again", lambda i: jnp.asarray([big + i, 0], dtype="uint32"))
loop("device_put np", lambda i: jax.device_put(np.array([i, 0], np.uint32)))
