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


def _import_edges() -> dict[str, set[str]]:
    """Module -> the gpu-grid modules it imports (function-level imports too), over grid/ and tasks/site/."""
    import ast
    from pathlib import Path

    root = Path(grid.__file__).parent.parent
    paths = [*(root / "grid").rglob("*.py"), *(root / "tasks" / "site").rglob("*.py")]
    names = {}
    for path in paths:
        parts = path.relative_to(root).with_suffix("").parts
        parts = parts[2:] if parts[:2] == ("tasks", "site") else parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    edges: dict[str, set[str]] = {name: set() for name in names}
    for name, path in names.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            edges[name].update(t for t in targets if t in names and t != name)
    return edges


def test_no_module_imports_in_a_circle():
    edges = _import_edges()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges[todo.pop()] - seen:
                if nxt == goal:
                    return True
                seen.add(nxt)
                todo.append(nxt)
        return False

    circles = sorted(f"{a} <-> {b}" for a in edges for b in edges[a] if a < b and reaches(b, a))
    assert circles == []


def test_the_trial_side_never_imports_the_grid_package():
    """tasks/site loads grid/protocol.py by its path (gridtrial/protocol.py): `import grid` there could
    find a user's own module, and gpu-grid's imports pyarrow."""
    edges = _import_edges()
    trial_side = [name for name in edges if name == "sitecustomize" or name.startswith("gridtrial")]
    assert len(trial_side) >= 15
    assert {name: sorted(t for t in edges[name] if t.startswith("grid.") or t == "grid") for name in trial_side} == {
        name: [] for name in trial_side
    }
