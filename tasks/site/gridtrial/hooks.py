"""Run a function right after a module is first imported, before the importer gets it back.

The memory caps of tensorflow and torch must be set after their import and before their first
use of a GPU, and Keras is instrumented once it exists: whoever imports them (the user's script,
Keras importing its backend, a library) goes through this finder. It wraps the module's own
loader for that one import; every other import passes by untouched.
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import time
from collections.abc import Callable

# module name -> called with (module, seconds its import took)
Hook = Callable[[object, float], None]


class PostImportFinder:
    """A meta path finder (importlib.abc.MetaPathFinder's protocol, without importing it: importlib.abc
    pulls in importlib.resources, tempfile and shutil, ~5 ms of every trial process's start)."""

    def __init__(self, hooks: dict[str, Hook]):
        self.hooks = dict(hooks)
        self._busy = threading.local()

    def find_spec(self, name, path=None, target=None):
        hook = self.hooks.get(name)
        if hook is None or getattr(self._busy, name, False):
            return None
        setattr(self._busy, name, True)
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None:  # another finder (zipimport, an editable install's) may know it
                for finder in sys.meta_path:
                    if finder is not self and hasattr(finder, "find_spec"):
                        spec = finder.find_spec(name, path, target)
                        if spec is not None:
                            break
        finally:
            setattr(self._busy, name, False)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        self.hooks.pop(name)  # once per process
        run_module = spec.loader.exec_module

        def exec_module(module):
            t0 = time.perf_counter()
            run_module(module)
            hook(module, time.perf_counter() - t0)

        spec.loader.exec_module = exec_module  # this import's own loader instance
        return spec


def install(hooks: dict[str, Hook]) -> None:
    """Hook modules not imported yet; one already imported gets its hook at once (import time 0)."""
    pending = {}
    for name, hook in hooks.items():
        if name in sys.modules:
            hook(sys.modules[name], 0.0)
        else:
            pending[name] = hook
    if pending:
        sys.meta_path.insert(0, PostImportFinder(pending))
