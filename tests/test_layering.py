"""The import layering: lower packages never import higher ones, and no module imports itself round a circle.

Imports are read from the source (module level and inside functions alike), so a lazy import counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from src.config import REPO_ROOT

SRC = REPO_ROOT / "src"

# lowest first; a package may import only packages on an earlier line
PACKAGES = [
    ["src.errors"],
    ["src.config"],
    ["src.sandbox", "src.tasks", "src.training"],
    ["src.reporting"],
    ["src.llm"],
    ["src.corpus"],
    ["src.pipeline"],
    ["src.solutions"],
    ["src.train", "src.generate", "src.evaluate", "src.tables", "src.task", "src.main"],
]
# inside the pipeline: the shared records, then the method's stages in order, then their composition
PIPELINE = [
    ["src.pipeline.journal", "src.pipeline.validation"],
    ["src.pipeline.instruct", "src.pipeline.code"],
    ["src.pipeline.refine"],
    ["src.pipeline.search"],
    ["src.pipeline.generate", "src.pipeline.predict"],
]
TASKS = [
    ["src.tasks.metrics"],
    ["src.tasks.task"],
    ["src.tasks.readers"],
    ["src.tasks.splits", "src.tasks.cache", "src.tasks.registry"],
    ["src.tasks.prepare"],
    ["src.tasks.grading"],
    ["src.tasks.rating"],
]


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in SRC.rglob("*.py")}


def _imports(module: str) -> set[str]:
    """The src modules `module` imports (`from pkg import submodule` counts as the submodule)."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("src"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("src.")}
    return out - {"src"}


GRAPH = {m: _imports(m) for m in MODULES}


def _rank(module: str, layers: list[list[str]]) -> int | None:
    for i, layer in enumerate(layers):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    return None


def _upward(layers: list[list[str]], graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for a, targets in graph.items():
        for b in targets:
            ra, rb = _rank(a, layers), _rank(b, layers)
            same = (
                ra is not None and ra == rb and any(a.startswith(p) and b.startswith(p) for p in layers[ra])
            )
            if ra is not None and rb is not None and rb >= ra and not same:
                bad.append(f"{a} -> {b}")
    return sorted(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_placed_in_a_layer() -> None:
    unplaced = [m for m in MODULES if m != "src" and _rank(m, PACKAGES) is None]
    assert not unplaced, f"add {unplaced} to PACKAGES in tests/test_layering.py"
    unplaced = [m for m in MODULES if m.startswith("src.pipeline.") and _rank(m, PIPELINE) is None]
    unplaced += [m for m in MODULES if m.startswith("src.tasks.") and _rank(m, TASKS) is None]
    assert not unplaced, f"add {unplaced} to PIPELINE / TASKS in tests/test_layering.py"


def test_lower_packages_never_import_higher_ones() -> None:
    assert _upward(PACKAGES, GRAPH) == []


def test_the_stages_import_only_earlier_stages() -> None:
    assert _upward(PIPELINE, GRAPH) == []
    assert _upward(TASKS, GRAPH) == []


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_checks_catch_what_they_look_for() -> None:
    # the two faults this layout removed: corpus reaching up into the compiler, registry <-> prepare
    graph = {
        **GRAPH,
        "src.corpus.retrieval": GRAPH["src.corpus.retrieval"] | {"src.pipeline.code.compiler.parse"},
    }
    assert _upward(PACKAGES, graph) == ["src.corpus.retrieval -> src.pipeline.code.compiler.parse"]
    graph = {
        **GRAPH,
        "src.tasks.registry": GRAPH["src.tasks.registry"] | {"src.tasks.prepare"},
        "src.tasks.prepare": GRAPH["src.tasks.prepare"] | {"src.tasks.registry"},
    }
    assert "src.tasks.registry -> src.tasks.prepare" in _upward(TASKS, graph)
    assert ["src.tasks.prepare", "src.tasks.registry"] in _cycles(graph)
