"""A user's target, checked before anything runs and made concrete for each trial.

- A command is split like a shell would split it (no shell runs it), or given as a list; its
  `{name}` placeholders must each name an axis or param (or trial_id, attempt, repeat, trial_dir). A leading
  `python`/`python3` means the trial's interpreter.
- The script a target runs is found without running or importing it (the first file named in
  the command, a `-m` module, a function's module) and hashed: editing it makes new trials.
- A `python script.py` command's script must exist in the workdir (a typo is a spec error, with the
  nearest names offered), checked like Python's own command line reads its arguments.
- A function's module is found on disk and its name looked up in the module's source, so a typo
  is a spec error, not a sweep of failed trials; the driver never imports user code.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import os
import re
import shlex
import shutil
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PER_TRIAL = ("trial_id", "attempt", "repeat", "trial_dir")  # placeholders filled in for each attempt
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PYTHON_LONG_OPTIONS_WITH_VALUE = ("--check-hash-based-pycs",)
_QUALNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def split_command(raw: Any, problems: list[str]) -> tuple[str, ...]:
    """A command string split like a shell would (quotes, escapes), or a list kept as it is."""
    if isinstance(raw, str):
        try:
            tokens = shlex.split(raw)
        except ValueError as exc:
            problems.append(f"command: received {json.dumps(raw)}, which does not split into words ({exc})")
            return ()
    elif isinstance(raw, list) and all(isinstance(t, (str, int, float)) and not isinstance(t, bool) for t in raw):
        tokens = [str(t) for t in raw]
    else:
        problems.append(f"command: received {json.dumps(raw, default=str)}, expected a string or a list of strings")
        return ()
    if not tokens:
        problems.append("command: received an empty command, expected a program and its arguments")
    return tuple(tokens)


def placeholders(tokens: tuple[str, ...], problems: list[str]) -> list[str]:
    """The names of `{name}` placeholders, in order ({{ and }} are literal braces)."""
    names: list[str] = []
    for token in tokens:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(token) if f is not None]
        except ValueError as exc:
            problems.append(
                f"command: {token!r} has a malformed placeholder ({exc}); write {{{{ and }}}} for literal braces"
            )
            continue
        for name in fields:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                problems.append(
                    f"command: placeholder {{{name}}} in {token!r} is not a plain name; write "
                    f"{{batch_size}}, or {{{{ and }}}} for literal braces"
                )
            elif name not in names:
                names.append(name)
    return names


def render_value(value: Any, spec: str = "") -> str:
    """A config value as it appears in a command or a GRID_<NAME> variable: text as is, numbers as
    Python writes them, null/true/false as in the spec."""
    if spec:
        return format(value, spec)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def render(tokens: tuple[str, ...], values: dict[str, Any]) -> list[str]:
    out = []
    for token in tokens:
        parts = []
        for literal, name, spec, conversion in string.Formatter().parse(token):
            parts.append(literal)
            if name is not None:
                value = values[name]
                parts.append(render_value(repr(value) if conversion == "r" else value, spec or ""))
        out.append("".join(parts))
    return out


def is_python(token: str) -> bool:
    return bool(_PYTHON.match(os.path.basename(token))) and "/" not in token


def resolve_program(program: str, path_env: str, cwd: str) -> str | None:
    """The file a command's first word runs: a path (relative to the workdir) or a name on PATH."""
    if "/" in program:
        full = program if os.path.isabs(program) else os.path.join(cwd, program)
        return full if os.path.isfile(full) and os.access(full, os.X_OK) else None
    return shutil.which(program, path=path_env)


def check_python_script(tokens: tuple[str, ...], workdir: Path, problems: list[str]) -> None:
    """`python [options] script.py ...`: the script must be a file (relative to the workdir), else
    every trial would fail with "can't open file". Nothing to check for `-m`, `-c`, `-` (stdin),
    a placeholder or a command that is not Python."""
    if not tokens or not is_python(tokens[0]):
        return
    rest = list(tokens[1:])
    while rest and rest[0].startswith("-") and rest[0] != "-":
        option = rest.pop(0)
        if option.startswith("--"):
            if option in _PYTHON_LONG_OPTIONS_WITH_VALUE and rest:
                rest.pop(0)
            continue
        for i, flag in enumerate(option[1:], start=1):  # -u, -um pkg, -Wignore, -X importtime
            if flag in "mc":
                return
            if flag in "WX":
                if i == len(option) - 1 and rest:
                    rest.pop(0)
                break
    if not rest or rest[0] == "-" or "{" in rest[0]:
        return
    script = rest[0]
    path = Path(script) if os.path.isabs(script) else workdir / script
    if path.is_file():
        return
    if path.is_dir() and (path / "__main__.py").is_file():
        return  # python folder/ runs its __main__.py
    folder = path.parent
    names = sorted(p.name for p in folder.glob("*.py")) if folder.is_dir() else []
    near = difflib.get_close_matches(path.name, names, n=3)
    hint = (
        f"; did you mean {' or '.join(repr(str(Path(script).parent / n)) for n in near)}?"
        if near
        else f"; Python files there: {', '.join(names[:10]) or 'none'}"
    )
    problems.append(f"command: script {script!r} not found (looked in {folder}){hint}")


# -- the script a target runs, and its hash


@dataclass(frozen=True)
class Script:
    paths: tuple[str, ...]  # relative to the workdir where possible
    sha256: str | None  # None: no file found to hash

    def note(self) -> str:
        if self.sha256 is None:
            return "no script file found to hash: editing the code it runs will not make new trials"
        return f"{', '.join(self.paths)} (sha256 {self.sha256[:12]})"


def _module_file(module: str, roots: list[Path]) -> Path | None:
    parts = module.split(".")
    for root in roots:
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py", base / "__main__.py"):
            if candidate.is_file():
                return candidate
    return None


def command_files(tokens: tuple[str, ...], workdir: Path) -> list[Path]:
    """Files the command names (before placeholders are filled), and the module of `-m mod`."""
    found: list[Path] = []
    rest = tokens[1:] if tokens and is_python(tokens[0]) else tokens
    for i, token in enumerate(rest):
        if "{" in token:
            continue
        if token == "-m" and i + 1 < len(rest):
            module = _module_file(rest[i + 1], [workdir])
            if module is not None:
                found.append(module)
            continue
        path = Path(token) if os.path.isabs(token) else workdir / token
        if not token.startswith("-") and path.is_file():
            found.append(path)
    return found


def script_of(files: list[Path], workdir: Path) -> Script:
    if not files:
        return Script((), None)
    digest = hashlib.sha256()
    shown = []
    for path in files:
        digest.update(path.read_bytes())
        try:
            shown.append(str(path.resolve().relative_to(workdir.resolve())))
        except ValueError:
            shown.append(str(path))
    return Script(tuple(shown), digest.hexdigest())


def find_function(target: Any, workdir: Path, problems: list[str]) -> Path | None:
    """The file of a `pkg.module:name` function, checked without importing it."""
    if not isinstance(target, str) or ":" not in target:
        problems.append(
            f"function: received {json.dumps(target, default=str)}, expected 'pkg.module:function' "
            f"(a module importable from the workdir, and a function in it)"
        )
        return None
    module, _, name = target.partition(":")
    if not _MODULE.match(module) or not _QUALNAME.match(name):
        problems.append(f"function: received {target!r}, expected 'pkg.module:function'")
        return None
    path = _module_file(module, [workdir, *(Path(p) for p in sys.path if p and os.path.isdir(p))])
    if path is None:
        problems.append(
            f"function: module {module!r} not found (looked for {module.replace('.', '/')}.py and "
            f"{module.replace('.', '/')}/__init__.py in the workdir {workdir} and on gpu-grid's "
            f"Python path); the module must be importable from the workdir"
        )
        return None
    defined = _top_level_names(path)
    first = name.split(".")[0]
    if defined is not None and first not in defined:
        problems.append(
            f"function: {path.name} defines no {first!r} (it defines: "
            f"{', '.join(sorted(defined)) or 'nothing at top level'})"
        )
    return path


def _top_level_names(path: Path) -> set[str] | None:
    """Names a module defines at top level; None when it cannot be told (star imports, __getattr__)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add((alias.asname or alias.name).split(".")[0])
    return None if "__getattr__" in names else names
