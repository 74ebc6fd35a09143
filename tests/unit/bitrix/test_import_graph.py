"""No import circles in apps/bitrix or apps/plans (issue 7).

The graph is built from the source with `ast`, over every module of `apps/` (migrations aside),
so that a circle through another app (bitrix -> portals -> bitrix) counts too. An edge is an
import that runs when the module is imported: at module level or in a class body, including
under `if`/`try`. Imports inside functions (the usual lazy `services -> tasks` import) and under
`if TYPE_CHECKING:` are not edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHECKED = ("apps.bitrix", "apps.plans")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for path in sorted((root / "apps").rglob("*.py"))
        if "migrations" not in path.parts
    }


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def all_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, lazy ones included."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def eager_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue  # lazy: runs only when called
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit([n for n in getattr(node, field, []) if isinstance(n, ast.stmt | ast.excepthandler)])

    visit(tree.body)
    return found


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph(modules: dict[str, Path], *, lazy: bool = False) -> dict[str, set[str]]:
    """module -> the project modules it imports (eagerly, or also inside functions if `lazy`)."""
    statements = all_imports if lazy else eager_imports
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in statements(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                source = _resolve_from(module, is_package, node)
                names = [source, *(f"{source}.{alias.name}" for alias in node.names)]
            for name in names:
                # `import a.b.c` runs a, a.b and a.b.c: every one that is ours is an edge.
                parts = name.split(".")
                targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _parse(source: str) -> ast.Module:
    return ast.parse(source)


def test_finder_sees_a_circle_and_ignores_lazy_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = _parse(
        "import x\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import hidden\n"
        "try:\n    import tried\nexcept ImportError:\n    import fallback\n"
        "class K:\n    import in_class\n"
        "def f():\n    import lazy\n"
    )
    names = {alias.name for node in eager_imports(tree) for alias in node.names}
    assert names == {"x", "TYPE_CHECKING", "tried", "fallback", "in_class"}


def test_relative_imports_resolve_to_project_modules():
    graph = import_graph(project_modules())
    assert "apps.bitrix.errors" in graph["apps.bitrix.client"]  # `from .errors import ...`
    assert "apps.bitrix.limiter" in graph["apps.bitrix.client"]  # `from . import limiter`
    assert "apps.portals.models" in graph["apps.bitrix.client"]


def circles_through(package: str, graph: dict[str, set[str]]) -> list[list[str]]:
    return [c for c in cycles(graph) if any(m == package or m.startswith(package + ".") for m in c)]


@pytest.mark.parametrize("package", CHECKED)
def test_no_import_circle(package):
    graph = import_graph(project_modules())
    assert circles_through(package, graph) == [], f"import circles through {package}"


def test_the_transport_has_no_circle_even_through_lazy_imports():
    """apps/bitrix needs no lazy import to break a circle: its modules form a plain layering."""
    modules = project_modules()
    graph = import_graph(modules, lazy=True)
    bitrix = {m: {t for t in targets if t.startswith("apps.bitrix")}
              for m, targets in graph.items() if m.startswith("apps.bitrix")}
    assert cycles(bitrix) == []


def test_only_the_wire_module_imports_requests_for_bitrix():
    importers = set()
    for module, path in project_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # lazy imports count here
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "requests" for a in node.names):
                importers.add(module)
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "requests":
                importers.add(module)
    # apps.sandbox.events plays the portal posting its events to handlers: the portal's side, not ours
    assert importers == {"apps.bitrix.http", "apps.sandbox.events"}
