"""One way through: the layers of pyproject.toml hold, and no two modules import each other, even through a
chain (imports inside functions count: grimp sees them)."""
from __future__ import annotations

from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def cycles(graph: grimp.ImportGraph, modules: list[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    edges = {m: sorted(d for d in graph.find_modules_directly_imported_by(m) if d in modules) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for start in modules:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on.add(v)
            if i < len(edges[v]):
                work.append((v, i + 1))
                w = edges[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return found


def test_the_cycle_finder_finds_a_known_cycle(tmp_path, monkeypatch):
    """Known answer: a package whose a -> b -> c -> a (one import inside a function) and d -> a."""
    pkg = tmp_path / "circle"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from circle import b\n")
    (pkg / "b.py").write_text("def f():\n    from circle import c\n")
    (pkg / "c.py").write_text("import circle.a\n")
    (pkg / "d.py").write_text("import circle.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("circle", cache_dir=None)
    assert cycles(graph, sorted(graph.modules)) == [["circle.a", "circle.b", "circle.c"]]


def test_no_module_imports_itself_through_a_chain():
    graph = grimp.build_graph("ablate", cache_dir=None)
    found = cycles(graph, sorted(graph.modules))
    assert found == [], f"import cycles: {found}"


def test_the_layer_contracts_of_pyproject_hold(monkeypatch):
    from importlinter import cli as importlinter
    monkeypatch.chdir(ROOT)
    assert importlinter.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0
