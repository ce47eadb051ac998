"""The house: folders that show the data flow, and no import running back up.

Layers, bottom to top (README "Layout"): ``suites`` (what is measured) → ``bench/record`` (the record, its
files and the run's options; no torch) → ``bench/measure`` and ``bench/judge`` (side by side: neither
imports the other) → ``bench/render`` → ``bench/commands`` and the pytest plugin. An import may go down or
sideways within a folder, never up; and no two modules import each other, directly or round a loop.
Imports inside functions count: they are imports all the same."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Folder (or module) → layer. Modules of one layer may import each other (without a loop).
LAYERS = {
    "suites": 0,
    "bench": 1,  # the package itself: its version
    "bench.record": 1,
    "bench.measure": 2,
    "bench.judge": 2,
    "bench.render": 3,
    "bench.commands": 4,
    "bench.plugin": 4,
    "bench.test_cases": 5,
}
#: Side by side on one floor, and never to meet: measuring knows nothing of judging, and back.
APART = {("bench.measure", "bench.judge"), ("bench.judge", "bench.measure")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def home(module: str) -> str | None:
    """The layer key a module belongs to (its longest prefix in :data:`LAYERS`)."""
    keys = [k for k in LAYERS if module == k or module.startswith(k + ".")]
    return max(keys, key=len) if keys else None


def imports(path: Path) -> set[str]:
    """Every project module ``path`` imports (``from bench.x import y`` counts ``bench.x.y`` when that
    is a module, else ``bench.x``)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if MODULES.get(candidate) else node.module)
    return {m for m in found if home(m) is not None}


MODULES = {module_name(p): p for folder in ("bench", "suites") for p in (ROOT / folder).rglob("*.py")}
GRAPH = {name: imports(path) for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if home(m) is None] == []


def test_no_import_runs_back_up_or_across() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        here = home(module)
        assert here is not None
        for target in targets:
            there = home(target)
            assert there is not None
            if LAYERS[there] > LAYERS[here] or (here, there) in APART:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_import_circle() -> None:
    """No strongly connected set of two or more modules (Tarjan's algorithm over the import graph)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in MODULES:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                circles.append(sorted(members))

    for node in MODULES:
        if node not in index:
            visit(node)
    assert circles == []


def test_the_record_layer_imports_no_torch() -> None:
    """What a results file is, and what a run is asked, must be readable without torch (bench compare,
    merge and report on a machine that only compares)."""
    heavy = {"torch", "torchvision", "fvcore"}
    wrong = []
    for module, path in MODULES.items():
        if home(module) == "bench.record":
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                wrong += [f"{module}: {n}" for n in names if n.split(".")[0] in heavy]
    assert wrong == []


def test_no_command_line_code_below_the_commands() -> None:
    """argparse and ``add_parser`` live in bench/commands; the library below never parses a command line
    (the option table in bench/record/options.py builds parsers for both, and parses nothing itself)."""
    wrong = []
    for module, path in MODULES.items():
        if home(module) in ("bench.measure", "bench.judge", "bench.render"):
            text = path.read_text()
            if "def add_parser" in text or "import argparse" in text or "sys.argv" in text:
                wrong.append(module)
    assert wrong == []


#: bench/render: one module per output format, each laying out what the content modules say.
FORMATS = {"bench.render.terminal", "bench.render.markdown", "bench.render.json_report", "bench.render.html_report"}
CONTENT = {"bench.render.comparison", "bench.render.report", "bench.render.summary"}


def test_each_output_format_is_one_module_over_format_free_content() -> None:
    """A new format is one new module: the content says nothing about any format, and no format borrows
    from another (what two formats share belongs in the content or in ``table.py``)."""
    assert FORMATS <= set(MODULES) and CONTENT <= set(MODULES)
    wrong = [f"{m} -> {t}" for m in FORMATS | CONTENT for t in GRAPH[m] if t in FORMATS and t != m]
    assert wrong == []
    # the content hands out tables and sentences, never markup or a rich renderable
    for module in CONTENT:
        tree = ast.parse(MODULES[module].read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {n for n in names if n.split(".")[0] in ("rich", "html", "json", "plotly")}, (module, names)
