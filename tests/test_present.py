"""bench.render.table: tables that fit the console, Markdown escaping, and its independence of the comparator."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bench.render.table import Column, TableSpec, md_code, md_text

PRESENT = Path(__file__).resolve().parents[1] / "bench" / "render" / "table.py"
#: What the presentation module must never import: verdicts, statistics, results, commands.
FORBIDDEN = ("bench.judge.verdicts", "bench.judge.stats", "bench.render.comparison", "bench.commands", "bench.render.report", "bench.record.merge",
             "bench.record.results", "bench.measure.ab", "bench.commands.listing")


def test_present_imports_nothing_from_the_verdicts_or_the_commands() -> None:
    tree = ast.parse(PRESENT.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.startswith(FORBIDDEN)}, imported
    loaded = subprocess.run([sys.executable, "-c", "import sys, bench.render.table; print(' '.join(sys.modules))"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.startswith(FORBIDDEN)]


def _spec(rows: int = 3) -> TableSpec[int]:
    return TableSpec("numbers", [
        Column("name", lambda i: f"benchmark_{i}", no_wrap=True, priority=9),
        Column("value (M)", lambda i: f"{23.528522 + i:,.6f}", "right", priority=5),
        Column("other (ms)", lambda i: f"{1234567.25 * (i + 1):,.2f}", "right", priority=1),
        Column("note", lambda i: "a fairly long explanation of what happened " * 2, priority=3),
    ], list(range(rows)), footer="2 more not shown")


def _render(spec: TableSpec, width: int) -> str:
    console = Console(width=width, record=True, color_system=None, force_terminal=False, file=io.StringIO())
    console.print(spec.to_rich())
    return console.export_text()


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_numbers_stay_whole_and_what_does_not_fit_is_dropped(width: int) -> None:
    text = _render(_spec(), width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert all(any(f"{23.528522 + i:,.6f}" in line for line in lines) for i in range(3))
    shown, _ = _spec().to_rich().layout(width)
    if 2 in shown:
        assert all(any(f"{1234567.25 * (i + 1):,.2f}" in line for line in lines) for i in range(3))
    else:
        assert "columns left out at" in text and "other (ms)" in text.split("columns left out at")[1]
    assert "2 more not shown" in text


def test_lowest_priority_goes_first() -> None:
    spec = _spec()
    fitted = spec.to_rich()
    wide, _ = fitted.layout(200)
    assert wide == [0, 1, 2, 3]
    narrow, widths = fitted.layout(50)
    assert 0 in narrow and 1 in narrow and 2 not in narrow  # "other" (priority 1) before "note" (3)
    assert sum(widths) + 3 * len(narrow) + 1 <= 50


def test_markdown_escapes_every_metacharacter() -> None:
    assert md_text("a|b<c>&d*e`f_g[h]") == "a\\|b\\<c\\>\\&d\\*e\\`f\\_g\\[h\\]"
    assert md_text("two\nlines") == "two lines"
    assert md_code("test_step[x]") == "`test_step[x]`"
    assert md_code("a|`b`") == "`` a\\|`b` ``"  # a longer fence, padded where a backtick touches it
    assert md_code("a|b", in_table=False) == "`a|b`"
    table = TableSpec("t", [Column("name", lambda r: r, code=True), Column("why", lambda r: r)], ["x|<y>"])
    assert table.to_markdown().splitlines()[-1] == "| `x\\|<y>` | x\\|\\<y\\> |"
    assert "<td class=\"left \"><code>x|&lt;y&gt;</code></td>" in table.to_html()
