"""The worker <-> trial protocol inside a trial: grid/protocol.py itself, loaded by its path.

Not `import grid`: a user's own module named `grid` could stand in its place, and gpu-grid's `grid`
package imports pyarrow. The file sits at <tasks/site>/../../grid/protocol.py in the source tree
and in an installed gpu-grid alike (`grid` and `tasks` are packaged side by side). This module
replaces itself with that file's module, under this name: `from gridtrial.protocol import Env`.
Standard library only, like the file it loads.
"""

from __future__ import annotations

import importlib.util
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PATH = os.path.join(_ROOT, "grid", "protocol.py")


def _load() -> None:
    spec = importlib.util.spec_from_file_location(__name__, PATH)
    if spec is None or spec.loader is None or not os.path.isfile(PATH):
        raise ImportError(
            f"gpu-grid's protocol is not at {PATH}: tasks/site must stay in gpu-grid's tree, beside grid/",
            path=PATH,
        )
    module = importlib.util.module_from_spec(spec)
    module.PATH = PATH  # type: ignore[attr-defined]
    sys.modules[__name__] = module  # before it runs: its dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[__name__]
        raise


_load()
