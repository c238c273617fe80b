"""The code's structure, read from its own imports: no import cycles anywhere, and the layers of
`emotion_tool` import only downwards.

Every import counts, at module level or inside a function, under `TYPE_CHECKING` or not: a cycle
through a function-local import is still two modules that cannot be understood apart. An import
names the module it imports (`from a.b import c` is a.b.c when that is a module, else a.b); parent
packages are not counted, as import-linter and grimp count them.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("emotion_tool", "agents", "mcp_server", "demos", "benchmarks")

# emotion_tool's layers, bottom to top: a module may import its own layer and those below.
LAYERS = {
    "emotion_tool.config": 0,  # sizes and constants, no torch
    "emotion_tool.errors": 0,
    "emotion_tool._lazy": 0,
    "emotion_tool._moved": 0,
    "emotion_tool.audio": 1,
    "emotion_tool.engine": 2,
    "emotion_tool.live": 3,
    "emotion_tool.science": 3,
    "emotion_tool.jobs": 4,
    "emotion_tool.cli": 5,
    "emotion_tool.integrations": 5,
}
FACADE = "emotion_tool"  # the package's __init__ hands out names from every layer, on first use
# The packages built on emotion_tool: the agents and the MCP server side by side (neither imports the
# other), the demos and benchmarks on everything.
TOP = {"agents": 6, "mcp_server": 6, "demos": 7, "benchmarks": 7}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if "node_modules" not in p.parts}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules that `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@functools.cache
def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def layer(name: str) -> int | None:
    if name == FACADE:
        return max(LAYERS.values())
    for prefix, level in {**LAYERS, **TOP}.items():
        if name == prefix or name.startswith(prefix + "."):
            return level
    return None


def test_the_reader_sees_the_imports():
    edges = graph()
    assert "emotion_tool.engine.recognizer" in edges["emotion_tool.cli.arguments"]  # a function-local import
    assert "emotion_tool.engine.results" in edges["emotion_tool.live.streaming"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_anywhere():
    found = cycles(graph())
    assert not found, "import cycles (each a set of modules that import each other):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_every_emotion_tool_module_has_a_layer():
    missing = [m for m in modules() if m.startswith("emotion_tool.") and layer(m) is None]
    assert not missing, f"modules outside every layer: {missing}; add their package to LAYERS"


@pytest.mark.parametrize("name", sorted(m for m in modules() if m.split(".")[0] in ("emotion_tool", "agents", "mcp_server")))
def test_imports_run_downwards(name: str):
    """A layer imports only its own layer and those below (the package's own __init__ counts as its top)."""
    edges = graph()
    mine = layer(name)
    upward = sorted(t for t in edges[name] if (layer(t) or 0) > (mine or 0))
    assert not upward, f"{name} (layer {mine}) imports upwards: " + ", ".join(f"{t} (layer {layer(t)})" for t in upward)


def test_every_module_says_what_it_is():
    """Every module opens with a docstring; every package's __init__ says what it offers."""
    bare = [str(p.relative_to(REPO)) for name, p in modules().items() if name.split(".")[0] in ("emotion_tool", "agents", "mcp_server")
            and ast.get_docstring(ast.parse(p.read_text())) is None]  # fmt: skip
    assert not bare, f"modules without a docstring: {bare}"


def test_old_import_paths_still_work_and_warn():
    """Code written against the flat layout runs: the old path gives the moved module itself."""
    import importlib
    import warnings

    from emotion_tool._moved import MOVED

    for old, new in MOVED.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(f"emotion_tool.{old}")
        assert module is importlib.import_module(f"emotion_tool.{new}"), old
        assert module.__name__ == f"emotion_tool.{new}" and module.__spec__.name == f"emotion_tool.{new}"
    from emotion_tool.train.config import load_config  # a module inside a moved package: one copy only
    from emotion_tool.jobs.train.config import load_config as same

    assert load_config is same


def test_every_emotion_tool_module_names_its_layer():
    """A reader learns from each module's docstring (or its package's) which layer it is in."""
    unnamed = []
    for name, path in modules().items():
        if not name.startswith("emotion_tool.") or name.count(".") == 0:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        package_doc = ast.get_docstring(ast.parse((path.parent / "__init__.py").read_text())) if path.name == "__init__.py" else ""
        if "Layer " not in doc and "Layer " not in (package_doc or ""):
            unnamed.append(name)
    assert not unnamed, f"modules whose docstring names no layer: {unnamed}"
