"""This process's trial bootstrap, once started: boot.py keeps it here, and what reads it (the
helpers a script calls, gridtrial.report and friends; the Keras probe) finds it here without
importing boot. Imports nothing.
"""

from __future__ import annotations

from typing import Any

_bootstrap: Any = None  # a boot.Boot


def bootstrap() -> Any:
    """This process's bootstrap, or None (no trial, or not started yet)."""
    return _bootstrap


def keep(bootstrap: Any) -> None:
    global _bootstrap
    _bootstrap = bootstrap


_loops = 0  # training loops (Keras fit, Lightning fit, Hugging Face train) running in this process now


def enter_loop() -> None:
    """A framework's training loop started: a plain DataLoader pass inside it is not an epoch of its own."""
    global _loops
    _loops += 1


def leave_loop() -> None:
    global _loops
    _loops = max(0, _loops - 1)


def in_loop() -> bool:
    return _loops > 0
