"""Structure of the package (issue 11): layers import only downwards, no import cycle (function
bodies included), no source module over 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import xlatent

SRC = Path(xlatent.__file__).parent
MAX_LINES = 400

#: What each part of the package may import (besides itself, ``xlatent._version`` and the
#: package root): data flows one way, files -> SpectrumSet -> model -> analyses -> report.
LAYERS: dict[str, set[str]] = {
    "xlatent.core": set(),
    "xlatent.instrument": {"xlatent.core"},
    "xlatent.clitools": {"xlatent.core"},
    "xlatent.io": {"xlatent.core", "xlatent.instrument", "xlatent.clitools"},
    "xlatent.physics": {"xlatent.core", "xlatent.instrument", "xlatent.io"},
    "xlatent.model": {"xlatent.core"},
    "xlatent.report": {"xlatent.core"},
    "xlatent.analysis": {"xlatent.core", "xlatent.io", "xlatent.model"},
    # pipeline: everything below (instrument: the response family the invariance check uses;
    # recipes: the demo refits its OOD threshold on an independent sky as a recipe does)
    "xlatent.pipeline": {
        "xlatent.core", "xlatent.instrument", "xlatent.physics", "xlatent.model",
        "xlatent.analysis", "xlatent.report", "xlatent.recipes",
    },
    # recipes: simulate a set (physics) and train on it (model)
    "xlatent.recipes": {"xlatent.core", "xlatent.physics", "xlatent.model"},
}  # fmt: skip


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, package: str) -> set[str]:
    """The modules ``path`` imports at run time, at any level (function bodies included; the
    ``if TYPE_CHECKING:`` blocks, which never run, left out)."""
    found: set[str] = set()
    skip = {id(n) for t in ast.walk(ast.parse(path.read_text())) if _type_checking(t)
            for n in ast.walk(t)}  # fmt: skip
    for node in ast.walk(ast.parse(path.read_text())):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            # ``from pkg import sub`` imports the submodule pkg.sub when there is one.
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return found


def _import_graph(root: Path) -> dict[str, set[str]]:
    modules = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        # A module's own parent packages are always initialised before it (``from pkg import
        # sibling`` inside pkg), so an edge to one is no cycle.
        ancestors = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
        graph[name] = {m for m in _imports(path, package) if m in modules} - {name} - ancestors
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _part(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_anywhere() -> None:
    graph = _import_graph(SRC)
    assert "xlatent.model.checkpoint" in graph and graph["xlatent.model"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    # Nothing inside the model package goes through its __init__ (the kind table lives there).
    inside = [m for m, deps in graph.items() if m.startswith("xlatent.model.")]
    assert not [m for m in inside if "xlatent.model" in graph[m]]


def test_layers_import_only_downwards() -> None:
    graph = _import_graph(SRC)
    wrong = []
    for module, deps in sorted(graph.items()):
        allowed = LAYERS.get(_part(module))
        if allowed is None:
            continue  # the CLI and the package root sit on top
        for dep in deps:
            part = _part(dep)
            if part not in (_part(module), "xlatent", "xlatent._version") and part not in allowed:
                wrong.append(f"{module} -> {dep}")
    assert not wrong, wrong


def test_every_source_file_at_most_400_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long
