"""The project's import graph: no cycle among its modules (function-level imports included), and the rooms'
rules: `models/` imports no Prefect, MLflow or `tasks`, and `tasks/` imports no `flows`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("configs", "flows", "tasks", "models")


def _modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its own name, for its `__init__.py`)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imported_names(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of everything `path` imports, at any depth of the file: module level, inside
    functions, and, in a module that uses `importlib`, every string naming a project module (a module
    loaded by name is imported all the same); relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    by_name = any(
        (isinstance(node, ast.Import) and any(alias.name == "importlib" for alias in node.names))
        or (isinstance(node, ast.ImportFrom) and node.module == "importlib")
        for node in ast.walk(tree)
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            yield from ((f"{base}.{alias.name}", node.lineno) for alias in node.names)
        elif by_name and isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES:
            yield node.value, node.lineno


def _graph() -> dict[str, dict[str, int]]:
    """Project-internal edges: module -> {imported project module: first line}."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in MODULES.items():
        edges = graph.setdefault(name, {})
        for target, line in _imported_names(name, path):
            if target in MODULES and target != name:
                edges.setdefault(target, line)
    return graph


def _components(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (each holds a cycle), by Tarjan's
    algorithm, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a closed path of module names) per strongly connected component."""
    return [_closed_path(graph, set(component)) for component in _components(graph)]


def _closed_path(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A cycle through the component's first module: a shortest path back to it (breadth first)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if nxt in component and nxt not in parents:
                    parents[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    """The cycle with the line of each import, and every module caught in the same knot."""
    steps = [f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False)]
    knot = next(c for c in _components(graph) if cycle[0] in c)
    return " -> ".join([*steps, cycle[-1]]) + f"\n  (all modules in this knot: {', '.join(knot)})"


def test_the_walk_sees_every_kind_of_import() -> None:
    # Guards the test itself: the judge step imports the judging package at module level, the CLI's
    # subcommands are imported somewhere, and function-level imports (judge-eval's) are seen too.
    graph = _graph()
    assert "tasks.judging.build" in graph["tasks.judge"]
    assert "tasks.judging.report" in graph["flows.judge_eval_flow"]  # imported inside a function
    assert "flows.judge_eval_flow" in graph["flows.judge_eval"]  # the subcommand imports its flow when it runs
    assert _cycles({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []


def test_no_import_cycle_outside_flows() -> None:
    graph = _graph()
    cycles = [c for c in _cycles(graph) if not all(m.startswith("flows") for m in c)]
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)


def test_no_import_cycle_among_flows() -> None:
    graph = _graph()
    cycles = [c for c in _cycles(graph) if all(m.startswith("flows") for m in c)]
    assert not cycles, "import cycles:\n" + "\n".join(_describe(graph, c) for c in cycles)


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [("models", ("prefect", "mlflow", "tasks", "flows")), ("tasks", ("flows",)), ("configs", ("flows", "tasks"))],
)
def test_data_flows_one_way(room: str, forbidden: tuple[str, ...]) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {target}"
        for name, path in MODULES.items()
        if name.split(".")[0] == room
        for target, line in _imported_names(name, path)
        if target.split(".")[0] in forbidden
    ]
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_the_cli_imports_its_subcommands_explicitly() -> None:
    # No module loaded by a name held in a string: the CLI's imports are the graph above.
    names = {target for target, _ in _imported_names("flows.cli", MODULES["flows.cli"])}
    assert not {n for n in names if n.split(".")[0] == "importlib"}
    assert {"flows.ablation", "flows.judge_eval", "flows.reproduce", "flows.score", "flows.serve"} <= names
