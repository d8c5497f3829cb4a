"""The house plan holds: no import cycle among convo's modules, the core imports no CLI or UI library,
and no module grows past about 600 lines without saying why in its docstring.

Imports are read from the source (every ``import`` statement, also those inside functions), so a
cycle hidden behind a lazy import is found too; an ``if __name__ == "__main__":`` or ``if TYPE_CHECKING:``
block is not an import of the module and is skipped.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "convo"
MAX_LINES = 600
CLI_OR_UI = ("argparse", "gradio")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_main_block(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` or ``if TYPE_CHECKING:``: imports that never run on import."""
    test = getattr(node, "test", None)
    if isinstance(node, ast.If) and isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return True
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")


def import_nodes(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if is_main_block(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from import_nodes(node)


def imported(name: str, path: Path) -> set[str]:
    """Every module name ``name`` imports (absolute, project or not)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = package[:len(package) - node.level + 1] if node.level else []
        prefix = ".".join(base + ([node.module] if node.module else []))
        submodules = {f"{prefix}.{alias.name}" for alias in node.names} & MODULES.keys()
        found.update(submodules or {prefix})
    return found


def graph() -> dict[str, set[str]]:
    return {name: {m for m in imported(name, path) if m in MODULES and m != name} for name, path in MODULES.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        trail.pop()
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_project_modules():
    edges = graph()
    assert "convo.engine.generation" in edges and "convo.engine.fastpath" in edges["convo.engine.generation"]
    assert cycle(edges) is None, " -> ".join(cycle(edges))


def test_engine_imports_no_feature_module():
    for name, deps in graph().items():
        if name.startswith("convo.engine"):
            outside = {d for d in deps if not d.startswith("convo.engine") and d not in ("convo.settings", "convo.threads")}
            assert not outside, (name, outside)


def test_core_imports_no_cli_or_ui_library():
    for name, path in MODULES.items():
        if name.startswith(("convo.ui", "convo.cli")) or name == "convo.__main__":
            continue
        roots = {m.split(".")[0] for m in imported(name, path)}
        assert not roots & set(CLI_OR_UI), (name, roots & set(CLI_OR_UI))


def test_no_long_module_without_a_stated_reason():
    for name, path in MODULES.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        assert "Why one module" in doc, f"{name}: {lines} lines and no 'Why one module' paragraph in its docstring"
