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


# XLA's and TensorFlow's BFC allocator: an allocation that still fails after waiting for memory to be
# freed (up to 10 s each) is logged with a summary of the allocator's state, and its op fails. A
# program can meet many such waits before the error reaches it (an H100 probe of ResNet-50 on jax
# at 0.1% of the card: 11 of them, 112 s). An allocation whose caller can do without it (scratch
# space) logs "The caller indicates that this is not a failure" instead, with no summary.
_GAVE_UP = "Current allocation summary follows"
_ALLOCATION = "ran out of memory trying to allocate"
_NEAR = 1000  # characters: the summary line follows the allocation's own within this
_KEEP = 4096  # characters of the text read so far kept to join markers split across reads


class AllocatorWatch:
    """Reads a log as it grows (from `offset`) for an allocator giving up on an allocation."""

    def __init__(self, path: str, offset: int = 0):
        self.path, self.offset, self.text = path, offset, ""

    def gave_up(self) -> str | None:
        """The allocator's line, once it logged a failed allocation; None until then."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                new = f.read()
        except OSError:
            return None
        if not new:
            return None
        self.offset += len(new)
        self.text = (self.text + new.decode("utf-8", "replace"))[-(_KEEP + len(new)) :]
        return allocator_gave_up(self.text)


def allocator_gave_up(text: str) -> str | None:
    """The line of `text` in which a BFC allocator reports an allocation it failed (with the summary
    that only a real failure prints), or None."""
    end = text.find(_GAVE_UP)
    while end != -1:
        start = text.rfind(_ALLOCATION, max(0, end - _NEAR), end)
        if start != -1:
            line_start = text.rfind("\n", 0, start) + 1
            line_end = text.find("\n", start)
            line = text[line_start : line_end if line_end != -1 else len(text)]
            return line.split("] ", 1)[-1].strip()[:300]
        end = text.find(_GAVE_UP, end + 1)
    return None
