"""The product's shape, checked from its source: each layer keeps to its own protocol, the
product never leans on its tooling, and no two product modules import each other in a ring.

These read the code (``ast``), not the running program, so a lazy import inside a function
counts as much as one at the top: a cycle hidden in a function body is still a cycle.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ROOT / "sync"

# What only the Graph edge (sync/graph) may spell: user paths, mail folders, delta rounds.
GRAPH_PATH = re.compile(r"""["'][^"']*(/users/|mailFolders|/delta\b|calendarView)""")
# What only the Workbooks edge (sync/workbooks) may spell: endpoints of the API.
WORKBOOKS_ENDPOINT = re.compile(r"""["'](crm|activity|email|admin|metadata)/[a-z_]+""")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(PRODUCT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every module ``name`` imports, wherever the statement sits; annotations-only imports
    (``if TYPE_CHECKING:``) are not imports at run time and are left out."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def walk(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.orelse)
                continue
            if isinstance(node, ast.Import):
                yield from (a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
                yield from subs if len(subs) == len(node.names) else [base, *subs]
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from walk([child])

    yield from walk(ast.parse(path.read_text(encoding="utf-8")).body)


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {
        name: {m for m in _imports(name, path, known) if m in known and m != name}
        for name, path in known.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            ring = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                ring.append(w)
                if w == v:
                    break
            if len(ring) > 1:
                found.append(sorted(ring))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_ring() -> None:
    ring = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(ring) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_product_modules_import_each_other_in_no_ring() -> None:
    graph = _graph()
    assert "sync.engine.emails" in graph and graph["sync.engine.twoway"]
    assert _cycles(graph) == []


def test_the_product_never_imports_its_tooling() -> None:
    known = _modules()
    offenders = sorted(
        f"{name} imports {m}"
        for name, path in known.items()
        for m in _imports(name, path, known)
        if m.split(".")[0] in ("devkit", "tests", "bench")
    )
    app = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    offenders += [
        f"function_app imports {n.module}"
        for n in ast.walk(app)
        if isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "devkit"
    ]
    assert offenders == []


def _spelled(pattern: re.Pattern[str], folder: str) -> list[str]:
    hits = []
    for path in sorted((PRODUCT / folder).rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line.split("#", 1)[0]):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    return hits


def test_the_patterns_catch_what_they_guard() -> None:
    assert GRAPH_PATH.search('f"/users/{quote(user)}/contacts"')
    assert GRAPH_PATH.search('"/contacts/delta"')
    assert WORKBOOKS_ENDPOINT.search('endpoint="crm/people"')
    assert not WORKBOOKS_ENDPOINT.search('"crm people"')


def test_the_engine_spells_no_graph_path_and_no_workbooks_endpoint() -> None:
    """The engine sequences work; the edges own their protocols (sync/graph, sync/workbooks)."""
    assert _spelled(GRAPH_PATH, "engine") == []
    assert _spelled(WORKBOOKS_ENDPOINT, "engine") == []
    assert _spelled(GRAPH_PATH, "workbooks") == []
    assert _spelled(WORKBOOKS_ENDPOINT, "graph") == []
