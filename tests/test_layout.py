"""The tree shows the architecture: the import graph (every import, top-level or deferred, read from the
source) has no cycle, tasks and cores do not import each other or the system, and reports read records only."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "tasks", "architectures", "options")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (a ``from x import y`` counts y when y is a module, else x)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = name.split(".")
            if node.level:
                base = base[: len(base) - node.level + (path.name == "__init__.py")]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            out |= {f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names}
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    edges = graph()
    assert len(edges) > 40 and sum(map(len, edges.values())) > 100  # the parser sees the real graph
    assert cycles(edges) == []
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]  # and would see a cycle


def test_layers_do_not_cross():
    edges = graph()
    crossing = [(a, b) for a, targets in edges.items() for b in targets
                if (a.startswith("tasks") and b.startswith(("architectures", "bench")))
                or (a.startswith("architectures") and b.startswith(("tasks", "bench")))
                or (a.startswith("options") and not b.startswith("options"))]
    assert crossing == []


def test_reports_read_records_only():
    edges = graph()
    reach = [(a, b) for a, targets in edges.items() if a.startswith("bench.reports") for b in targets
             if b.startswith(("bench.sweeps", "tasks", "architectures"))
             # the config's declarations, and the one schema every reader of records and metrics goes through
             or (b.startswith("bench.run.") and b not in ("bench.run.config", "bench.run.schema"))]
    assert reach == []
