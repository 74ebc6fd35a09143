"""apps/plans imports form no circle, and the executor depends on the pure helpers, not services."""

import ast
import pathlib

import apps.plans

PACKAGE = pathlib.Path(apps.plans.__file__).parent


def _imports(path: pathlib.Path, *, top_level_only: bool) -> set[str]:
    """Sibling modules of apps.plans that `path` imports."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("apps.plans."):
                found.add(node.module.split(".")[2])
            elif node.module == "apps.plans":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("apps.plans."))
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return (found & modules) - {path.stem}


def test_the_executor_never_imports_services_or_tasks():
    assert _imports(PACKAGE / "executor.py", top_level_only=False).isdisjoint({"services", "tasks"})
    assert "evaluation" in _imports(PACKAGE / "executor.py", top_level_only=False)


def test_only_services_imports_tasks_and_only_lazily():
    for path in PACKAGE.glob("*.py"):
        assert "tasks" not in _imports(path, top_level_only=True), path.name
        if path.stem != "services":
            assert "tasks" not in _imports(path, top_level_only=False), path.name


def test_module_imports_have_no_circle():
    graph = {p.stem: _imports(p, top_level_only=True) for p in PACKAGE.glob("*.py")}
    done, active = set(), []

    def visit(module):
        assert module not in active, " -> ".join([*active[active.index(module):], module])
        if module in done:
            return
        active.append(module)
        for dependency in sorted(graph.get(module, ())):
            visit(dependency)
        active.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
