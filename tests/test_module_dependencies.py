"""Dependencies point one way: the entry point picks a platform; the engine and swarm programs are
siblings that share what sits below them (declarations, components, rendering, settings), never each
other; nothing below a program imports a program."""

import ast

import pytest

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "infra" / "carecircle"
PROGRAMS = {"carecircle.program", "carecircle.engine_program", "carecircle.swarm_program"}


def _module_name(path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path) -> set[str]:
    """The carecircle modules a file imports (relative imports resolved, `from x import y` counted as x
    and x.y when x.y is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m.startswith("carecircle")}


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path) & set(files) for name, path in files.items()}


def reaches(graph: dict[str, set[str]], start: str, target: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module == target:
            return True
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, set())
    return False


def test_the_graph_sees_the_imports_it_judges():
    graph = import_graph()
    assert {"carecircle.engine_program", "carecircle.swarm_program"} <= graph["carecircle.program"]
    assert "carecircle.declarations" in graph["carecircle.swarm_program"] & graph["carecircle.engine_program"]


@pytest.mark.parametrize(("start", "target"), [("carecircle.engine_program", "carecircle.swarm_program"),
                                                ("carecircle.swarm_program", "carecircle.engine_program")])
def test_the_platforms_are_siblings(start, target):
    assert not reaches(import_graph(), start, target), f"{start} imports {target}: share what they need below both"


def test_nothing_below_the_programs_imports_one():
    graph = import_graph()
    offenders = {m: sorted(graph[m] & PROGRAMS) for m in graph
                 if m not in PROGRAMS and not m.startswith("carecircle.offline") and graph[m] & PROGRAMS}
    assert not offenders, offenders
