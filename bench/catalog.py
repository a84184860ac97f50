"""The registered task and architecture names, read from the sources without importing them (so without torch).

    python -c "from bench import catalog; print(catalog.task_names(), catalog.architecture_names())"

Importing ``tasks`` or ``architectures`` imports torch (seconds), which ``rnnbench list`` does not need. The
registries follow two fixed forms, so their names can be read from the syntax tree: a task is a class decorated
``@register`` with a ``name = "..."`` attribute (tasks/base.py), an architecture a module-level
``register("name", ...)`` call (architectures/registry.py). tests/test_catalog.py checks that this reading
equals the imported registries, so a registration in another form fails a test instead of going missing.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _trees(package: str):
    for path in sorted((ROOT / package).glob("*.py")):
        yield ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_register(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "register"


def task_names() -> list[str]:
    """Names of the classes decorated ``@register`` under tasks/, from their ``name = "..."``."""
    names = []
    for tree in _trees("tasks"):
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef) and any(map(_is_register, n.decorator_list))):
            for stmt in cls.body:
                if (isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "name" for t in stmt.targets)
                        and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
                    names.append(stmt.value.value)
    return sorted(names)


def architecture_names() -> list[str]:
    """First arguments of the module-level ``register("...", ...)`` calls under architectures/."""
    names = []
    for tree in _trees("architectures"):
        for stmt in tree.body:
            call = stmt.value if isinstance(stmt, ast.Expr) else None
            if (isinstance(call, ast.Call) and _is_register(call.func) and call.args
                    and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)):
                names.append(call.args[0].value)
    return sorted(names)
