"""gpu-grid inside a trial: the little a script may call. Stdlib only; on every trial's PYTHONPATH.

    try:
        from gridtrial import report
    except ImportError:  # run without gpu-grid
        def report(**values): pass

    report(test_acc=0.912, f1=0.88)          # each becomes a column of the trial's row

Outside a trial (the script run by hand) `report` does nothing, `config()` is {},
`trial_dir(default)` is the default and `memory_cap()` is {}. A script needs none of this: grid
measures Keras `fit` on its own and takes values from the output lines that the spec's `metrics:`
patterns match.
"""

from __future__ import annotations

from typing import Any

from gridtrial import current

_SCALARS = (str, int, float, bool, type(None))


def _current():
    return current.bootstrap()


def _check(name: Any, value: Any) -> Any:
    if not isinstance(name, str) or not name or name.startswith("_"):
        raise ValueError(f"report: a value's name must be a non-empty string not starting with '_'; received {name!r}")
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, _SCALARS):  # numpy / framework scalars
        try:
            value = item()
        except (TypeError, ValueError):  # an array of several values
            pass
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    if not isinstance(value, _SCALARS):
        raise TypeError(
            f"report: {name}={value!r} is a {type(value).__name__}; expected a number, a string, "
            f"true/false, null or a list of numbers"
        )
    return value


def report(values: dict[str, Any] | None = None, /, **named: Any) -> None:
    """Report values for the trial's row: `report(test_acc=0.91)` or `report({"test/acc": 0.91})`.
    A later report of the same name replaces the earlier one."""
    merged = {**(values or {}), **named}
    checked = {name: _check(name, value) for name, value in merged.items()}
    state = _current()
    if state is None or not checked:
        return
    with state.record.edit() as record:
        record.reports.update(checked)
    state.record.write()


def config() -> dict[str, Any]:
    """The trial's config: every axis and param value ({} outside a trial)."""
    state = _current()
    return dict(state.config) if state else {}


def trial_dir(default: str = ".") -> str:
    """The trial's own folder for what it writes (checkpoints, logs, plots): kept under the results,
    the same for each attempt of the trial (a checkpoint there is found again when the trial
    reruns), where the workdir is shared by every trial. `default` outside a trial."""
    import os

    from gridtrial.protocol import Env

    return os.environ.get(Env.TRIAL_DIR) or default


def gpu_memory_mib() -> list[float]:
    """The memory of each of the trial's GPUs, MiB, as gpu-grid knows it (NVML's figure, or what a
    fake GPU was given with --gpu-memory-mib); [] outside a trial or on a CPU slot."""
    state = _current()
    return list(state.trial.gpu_total_mib) if state else []


def memory_cap() -> dict[str, str]:
    """What the bootstrap applied in this process, per framework imported: {'torch': '...'}."""
    state = _current()
    return {name: cap.method for name, cap in state.record.data.caps.items()} if state else {}
