"""The architecture stays as DESIGN.md draws it: the registry is the only place a task is named, and no
module imports another module's private names. (The layers themselves are checked by import-linter in
``scripts/test.sh``, the types by mypy.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from gluebench.tasks import TASKS

SOURCE = Path(__file__).resolve().parents[1] / "src" / "gluebench"


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(SOURCE.rglob("*.py"))]


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _task_literals(modules: list[tuple[Path, ast.Module]]) -> list[str]:
    names = sorted(TASKS, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])")
    found = []
    for path, tree in modules:
        if path.name == "tasks.py":
            continue
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and pattern.search(node.value)):
                found.append(f"{path.name}:{node.lineno}: {node.value[:60]!r}")
    return found


def _private_imports(modules: list[tuple[Path, ast.Module]]) -> list[str]:
    found = []
    for path, tree in modules:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gluebench"):
                found += [f"{path.name}:{node.lineno}: {node.module}.{alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.endswith("__")]  # dunders are public
    return found


def test_no_module_outside_the_registry_names_a_task_in_a_string() -> None:
    assert _task_literals(_modules()) == []


def test_no_module_imports_another_modules_private_names() -> None:
    assert _private_imports(_modules()) == []


def test_the_scans_flag_what_they_look_for() -> None:
    code = '"""Docstrings may name MNLI."""\nfrom gluebench.runner import _aggregate\nif task == "MNLI":\n    pass\n'
    module = [(Path("bad.py"), ast.parse(code))]
    assert _task_literals(module) == ["bad.py:3: 'MNLI'"]
    assert _private_imports(module) == ["bad.py:2: gluebench.runner._aggregate"]
