"""Whether this process started the CUDA driver: after that, a fork of it is no longer usable.

A child forked after cuInit fails its first CUDA call with "CUDA error: initialization error",
whichever library (torch, jax, TensorFlow, CuPy, NCCL) started the driver and whether or not that
library says so itself (Keras on torch once did it through torch.cuda.is_available(), leaving
torch.cuda.is_initialized() False). Asked of the driver, without starting it. Standard library
only: it runs in any trial interpreter.
"""

from __future__ import annotations

import ctypes

_CUDA_ERROR_NOT_INITIALIZED = 3


def cuda_driver_started() -> bool:
    """cuDeviceGetCount answers CUDA_ERROR_NOT_INITIALIZED (3) until cuInit has run in this process.
    No driver (a CPU box): nothing to break."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int()
    return driver.cuDeviceGetCount(ctypes.byref(count)) != _CUDA_ERROR_NOT_INITIALIZED
