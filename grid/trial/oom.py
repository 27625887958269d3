"""Recognise out-of-memory failures of every backend from an error's type and text.

Stdlib only: the worker also applies it to the log tail of a child that died without a result.
"""

from __future__ import annotations

# (error type name, text marker); either may be None. Real texts are in tests/fixtures/oom/.
_MARKERS: tuple[tuple[str | None, str | None], ...] = (
    ("ResourceExhaustedError", None),  # tensorflow
    ("OutOfMemoryError", None),  # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError
    ("MemoryError", None),  # CPython
    ("XlaRuntimeError", "RESOURCE_EXHAUSTED"),  # jax
    ("JaxRuntimeError", "RESOURCE_EXHAUSTED"),
    (None, "RESOURCE_EXHAUSTED: Out of memory"),
    (None, "RESOURCE_EXHAUSTED: Failed to allocate"),  # jax's BFC allocator
    (None, "Resource exhausted: Out of memory"),  # older jaxlib
    (None, "OOM when allocating"),
    (None, "CUDA out of memory"),
    (None, "CUDA error: out of memory"),  # torch, when CUDA itself (context, cuBLAS) cannot allocate
    (None, "DefaultCPUAllocator: can't allocate memory"),  # torch on CPU, a RuntimeError
    (None, "cudaErrorMemoryAllocation"),
    (None, "CUDA_ERROR_OUT_OF_MEMORY"),
    (None, "cudaMalloc retry failed: out of memory"),  # mxnet's pooled storage manager
    (None, "cudaMalloc failed: out of memory"),
    ("MXNetError", "out of memory"),
    (None, "Failed to allocate CPU Memory"),  # mxnet's CPU storage
    ("MXNetError", "Memory allocation failed"),
)


def is_oom(error_type: str | None, message: str | None) -> bool:
    """True when the error is an out-of-memory failure on any backend."""
    error_type = error_type or ""
    message = message or ""
    short_type = error_type.rsplit(".", 1)[-1]
    for type_name, marker in _MARKERS:
        if type_name is not None and short_type != type_name:
            continue
        if marker is not None and marker.lower() not in message.lower():
            continue
        return True
    return False
