"""The scheduler side never imports a deep-learning framework; only trial processes do."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import grid

FRAMEWORKS = ("tensorflow", "jax", "torch", "keras", "mxnet")


def test_no_grid_module_imports_a_framework():
    modules = [m.name for m in pkgutil.walk_packages(grid.__path__, "grid.") if m.name != "grid.__main__"]
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"bad = [f for f in {FRAMEWORKS!r} if f in sys.modules]\nprint(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"grid imported {out.stdout.strip()}"
    assert len(modules) >= 40


def test_local_sweep_process_stays_framework_free(tmp_path):
    code = (
        "import sys\nfrom grid.spec.parse import parse_spec\nfrom grid.sweep import RunOptions, run_sweep\n"
        "spec = parse_spec({'name': 's', 'workload': 'sleep', 'params': {'seconds': 0.1},"
        " 'axes': {'backend': ['jax', 'torch']}})\n"
        f"run_sweep(spec, RunOptions(results={str(tmp_path)!r}, runner='local', live=False))\n"
        f"print('LOADED:' + ','.join(f for f in {FRAMEWORKS!r} if f in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("LOADED:"), out.stdout[-500:]


def test_grid_imports_nothing_from_tasks():
    """The scheduler side reads workloads as data (tasks/workloads.yaml); it never imports tasks/."""
    import ast
    from pathlib import Path

    offenders = []
    for path in Path(grid.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n == "tasks" or n.startswith(("tasks.", "gridtrial"))]
    assert offenders == []
