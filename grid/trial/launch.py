"""How one attempt's process is started: its trial JSON, its explicit environment and its argv.

- The trial JSON (its path in GRID_TRIAL: the protocol's TrialDocument, grid/protocol.py) holds
  the config, the GPUs, where each Python process of the trial leaves its record, and what to
  run. Every config value is also a GRID_<NAME> variable; GRID_TRIAL_ID and GRID_ATTEMPT name the
  attempt; GRID_TRIAL_DIR (`{trial_dir}`) is the trial's own folder for what it writes (the
  workdir is shared by every trial; trialdir.py). The variables' names are the protocol's (Env).
- PYTHONPATH starts with tasks/site, so every Python process of the trial runs the bootstrap;
  PATH starts with the trial interpreter's folder, so `python`, `torchrun` and friends inside the
  trial are that interpreter's.
- The frameworks' compilation caches point at the node's folder for the sweep (compilecache.py).
- A function runs as `<interpreter> -m gridtrial`; a command runs as written, a leading
  `python`/`python3` replaced by the trial's interpreter, other programs found on that PATH.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, replace
from typing import Any

from grid.protocol import Env, TrialDocument, config_var
from grid.shared import Placement, Trial
from grid.spec.model import GridSpec
from grid.spec.target import is_python, render, render_value, resolve_program
from grid.spec.workloads import KERAS_BACKENDS, PROJECT_ROOT, TRIAL_SITE
from grid.trial import compilecache

ENV_NOT_RECORDED = "(set by the spec's env:, not recorded)"

# Variables the worker sets itself, or that Ray sets for its own processes and a trial must not inherit.
_NOT_INHERITED = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "KERAS_BACKEND", "OMP_NUM_THREADS", "PYTHONPATH")


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    explicit: dict[str, str]  # the variables gpu-grid set (recorded in the row, less the spec's `env:` values)
    cwd: str
    command: str  # the argv as one shell-quoted line, for logs and the row
    missing: str | None = None  # why it cannot start: the program or interpreter is not there
    bootstrapped: bool = False  # a Python that runs the trial bootstrap first (it guards itself)
    from_spec: frozenset[str] = frozenset()  # the names the spec's `env:` set: their values are never recorded

    def recorded(self) -> dict[str, str]:
        """The variables gpu-grid set, as the row keeps them: the spec's `env:` values (tokens,
        passwords) reach the trial but not the results, where every reader of a copy would see them."""
        return {k: ENV_NOT_RECORDED if k in self.from_spec else v for k, v in self.explicit.items()}


def interpreter_for(spec: GridSpec, backend: str | None) -> str:
    """The Python that runs this backend's trials: the spec's `interpreters`, else the one running
    gpu-grid (its virtualenv); mxnet defaults to the project's .venv-mxnet."""
    path = spec.interpreters.get(backend or "none")  # a trial without a backend: `none`
    if path is None and backend == "mxnet":
        path = str(PROJECT_ROOT / ".venv-mxnet" / "bin" / "python")
    return path or sys.executable


def config_env(config: dict[str, Any]) -> dict[str, str]:
    return {config_var(name): render_value(value) for name, value in config.items()}


def child_env(
    spec: GridSpec,
    trial: Trial,
    attempt: int,
    placement: Placement,
    interpreter: str,
    trial_path: str,
    *,
    compile_dir: str | None = None,
    trial_dir: str = "",
) -> tuple[dict[str, str], dict[str, str]]:
    """The child's whole environment, and the part gpu-grid set explicitly (the spec's `env` last)."""
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("RAY_", Env.PREFIX)) and k not in _NOT_INHERITED
    }
    explicit = {
        "CUDA_VISIBLE_DEVICES": ",".join(placement.gpu_ids),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(TRIAL_SITE), str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p
        ),
        "PATH": os.pathsep.join(p for p in (os.path.dirname(interpreter), os.environ.get("PATH")) if p),
        "PYTHONUNBUFFERED": "1",
        Env.TRIAL: trial_path,
        Env.TRIAL_ID: trial.trial_id,
        Env.ATTEMPT: str(attempt),
        **config_env(trial.config),
    }
    if trial_dir:
        explicit[Env.TRIAL_DIR] = trial_dir
    if placement.on_gpu:
        explicit["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's device numbering = NVML's = Ray's
    backend = trial.config.get("backend")
    if backend in KERAS_BACKENDS:
        explicit["KERAS_BACKEND"] = backend
    explicit.update(compilecache.environment(trial.config, compile_dir))
    explicit.update(spec.env)
    return {**inherited, **explicit}, explicit


def trial_document(
    spec: GridSpec, trial: Trial, attempt: int, placement: Placement, records_dir: str, gpu_info: dict[str, Any]
) -> TrialDocument:
    target = spec.workload_def.target_for(trial.config.get("backend"))
    total = gpu_info.get("gpu_total_mib")
    return TrialDocument(
        trial_id=trial.trial_id,
        attempt=attempt,
        sweep=spec.name,
        workload=trial.workload,
        repeat=trial.repeat,
        config=trial.config,
        gpu_ids=list(placement.gpu_ids),
        gpu_total_mib=[total] * len(placement.gpu_ids) if total else [],
        records_dir=records_dir,
        workdir=spec.workdir,
        function=target.function,
        command=list(target.command or []) or None,
        stop_after_steps=trial.stop_after_steps,
        sample_interval_ms=spec.sample_interval_ms,
    )


def _interpreters_torchrun(program: str | None, interpreter: str) -> bool:
    """Whether a command's program is the trial interpreter's own `torchrun` (its folder's)."""
    return (
        program is not None
        and os.path.basename(program) == "torchrun"
        and os.path.dirname(os.path.abspath(program)) == os.path.dirname(os.path.abspath(interpreter))
    )


def prepare(
    spec: GridSpec,
    trial: Trial,
    attempt: int,
    placement: Placement,
    scratch: str,
    gpu_info: dict[str, Any] | None = None,
    compile_dir: str | None = None,
    trial_dir: str = "",
) -> Launch:
    """Write the trial JSON into `scratch` and say how to start the attempt's process. `trial_dir`:
    the trial's own folder on this machine (GRID_TRIAL_DIR, `{trial_dir}`)."""
    records_dir = os.path.join(scratch, "records")
    os.makedirs(records_dir)
    doc = trial_document(spec, trial, attempt, placement, records_dir, gpu_info or {})
    trial_path = os.path.join(scratch, "trial.json")
    interpreter = interpreter_for(spec, trial.config.get("backend"))
    env, explicit = child_env(
        spec,
        trial,
        attempt,
        placement,
        interpreter,
        trial_path,
        compile_dir=compile_dir,
        trial_dir=trial_dir,
    )
    if doc.command:
        argv = render(
            tuple(doc.command),
            {
                **trial.config,
                "trial_id": trial.trial_id,
                "attempt": attempt,
                "repeat": trial.repeat,
                "trial_dir": trial_dir,
            },
        )
        doc = replace(doc, command=argv)
        python = is_python(argv[0])
        program = interpreter if python else resolve_program(argv[0], env["PATH"], spec.workdir)
        if not python and _interpreters_torchrun(program, interpreter):
            # torchrun is torch.distributed.run's console script: run as the module, it starts warm
            # and its ranks fork from it (tasks/site/gridtrial/ranks.py)
            argv = [argv[0], "-m", "torch.distributed.run", *argv[1:]]
            python, program = True, interpreter
    else:
        python, program = True, interpreter
        argv = [interpreter, "-m", "gridtrial"]
    with open(trial_path, "w") as f:
        f.write(doc.to_json())
    missing = None
    if python and not os.path.exists(interpreter):
        missing = (
            f"InterpreterNotFound: no interpreter at {interpreter} for backend "
            f"{trial.config.get('backend')!r}; build it (make mxnet-env) or set interpreters.<backend> in the spec"
        )
    elif program is None:
        missing = (
            f"CommandNotFound: program {argv[0]!r} not found (not a file in {spec.workdir}, not on PATH={env['PATH']})"
        )
    argv = [program or argv[0], *argv[1:]]
    return Launch(
        argv, env, explicit, spec.workdir, shlex.join(argv), missing, bootstrapped=python, from_spec=frozenset(spec.env)
    )
