"""What a Python script imports, read from its text (never run): the packages a warm parent can
import for its first trial, before any trial of it has said what it imports (warm.py learns that
from the trial's records afterwards)."""

from __future__ import annotations

import ast
import os
import sys

_NEVER = frozenset({"gridtrial", "sitecustomize", "tasks", "grid", "__future__"})
_seen: dict[tuple[str, float], tuple[str, ...]] = {}


def _statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """A module's statements, into its ifs, trys and withs (a guarded import is still the script's),
    not into its functions and classes (imported only when called)."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If):
            out += _statements(node.body) + _statements(node.orelse)
        elif isinstance(node, ast.Try):
            out += _statements(node.body) + _statements(node.orelse) + _statements(node.finalbody)
            for handler in node.handlers:
                out += _statements(handler.body)
        elif isinstance(node, ast.With):
            out += _statements(node.body)
    return out


def _own(name: str, folder: str) -> bool:
    return os.path.exists(os.path.join(folder, f"{name}.py")) or os.path.isdir(os.path.join(folder, name))


def script_imports(path: str) -> tuple[str, ...]:
    """The top-level packages `path` imports at module level, in order: not the standard library's,
    not gpu-grid's, not the script's own (modules beside it). () where it cannot be read."""
    try:
        key = (os.path.abspath(path), os.path.getmtime(path))
    except OSError:
        return ()
    if key in _seen:
        return _seen[key]
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return ()
    folder = os.path.dirname(key[0])
    stdlib: frozenset[str] = getattr(sys, "stdlib_module_names", frozenset())
    found: dict[str, None] = {}
    for node in _statements(tree.body):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.partition(".")[0]
            if top not in stdlib and top not in _NEVER and not _own(top, folder):
                found.setdefault(top, None)
    _seen[key] = tuple(found)
    return _seen[key]
