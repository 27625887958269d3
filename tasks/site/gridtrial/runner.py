"""The `function:` path: `python -m gridtrial` calls `module:function(config)` in the trial process.

The function gets the trial's config (every axis and param) and may return a dict, which is
merged into the row like an explicit report. An exception ends the trial as `error` (grid reads
its type and message, and calls it `oom` when it was an out-of-memory error) and exits 1. The
module is imported from the trial's workdir first.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from gridtrial import boot, leave
from gridtrial.protocol import Env, Exit, plain


def resolve(target: str) -> Callable[[dict], Any]:
    """'pkg.module:function' (or 'pkg.module:Class.method') as the callable it names."""
    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is a {type(obj).__name__}, not a function")
    return obj


def run_function(function: Callable[[dict], Any] | str, trial_path: str | None = None) -> int:
    """Call the function with the trial's config; keep its return value or its exception."""
    state = boot.start(trial_path)
    workdir = state.trial.workdir
    if workdir and workdir not in sys.path:
        sys.path.insert(0, workdir)
    code = Exit.OK
    try:
        fn = resolve(function) if isinstance(function, str) else function
        out = fn(dict(state.config))
        if out is not None and not isinstance(out, dict):
            raise TypeError(
                f"a trial function returns a dict of results or None; "
                f"{getattr(fn, '__qualname__', fn)} returned a {type(out).__name__}"
            )
        with state.record.edit() as record:
            record.returned = plain(out or {})
    except SystemExit as exc:
        if exc.code not in (None, 0):
            state.keep_error(exc)
            code = exc.code if isinstance(exc.code, int) else Exit.ERROR
    except BaseException as exc:
        state.keep_error(exc)
        traceback.print_exc()
        code = Exit.ERROR
    state.finish()
    sys.stdout.flush()
    return code


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or not (argv or os.environ.get(Env.TRIAL)):
        sys.exit(f"usage: python -m gridtrial [TRIAL_JSON]   (default: ${Env.TRIAL})")
    trial_path = argv[0] if argv else None
    state = boot.start(trial_path)
    target = state.trial.function
    if not target:
        sys.exit(f"{os.environ[Env.TRIAL]} names no function to run")
    leave.leave(run_function(target))
