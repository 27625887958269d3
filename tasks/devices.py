"""What a trial says when it was given fewer devices than its `gpus` asks for."""

from __future__ import annotations

import os


def gpus_error(k: int, seen: str) -> RuntimeError:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return RuntimeError(
        f"gpus={k} needs {k} visible GPUs; CUDA_VISIBLE_DEVICES={visible!r} ({seen}); "
        f"run it on a node with {k} free GPUs or set gpus: [1]"
    )
