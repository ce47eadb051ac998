"""Presentation shared by every ``bench`` command: message levels, declarative tables rendered to the
terminal, Markdown and HTML, value formatting and the console.

Nothing here knows what a verdict or a command line is (a test checks that this module imports
neither), so that ``bench report``, ``bench merge`` and ``bench list`` use it without the comparator.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from bench.record.metrics import Exact, Metric


class Level(str, Enum):
    """How loudly a message is shown: ``error`` in red with a warning sign, ``warning`` in yellow."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Message:
    """A sentence for the reader with its level (renderers style by level, never by wording)."""

    level: Level
    text: str


Row = TypeVar("Row")
Justify = Literal["left", "right", "center"]


@dataclass(frozen=True)
class Column(Generic[Row]):
    """One column of a table, declared once and rendered to rich, Markdown and HTML alike.

    A right-justified column holds numbers: its cells never wrap. When a table does not fit the
    terminal, columns are dropped lowest ``priority`` first (the rightmost of equals first), and
    the table says which."""

    header: str
    cell: Callable[[Row], str]
    justify: Justify = "left"
    style: Callable[[Row], str] | None = None  # rich style of the cell
    #: Keep the cell on one line in the terminal (names: folding them makes them unreadable).
    no_wrap: bool = False
    priority: int = 0
    #: An identifier (benchmark or file name): a code span in Markdown, ``<code>`` in HTML.
    code: bool = False

    @property
    def whole(self) -> bool:
        """Cells are shown whole or not at all (numbers and names)."""
        return self.no_wrap or self.justify == "right"


@dataclass(frozen=True)
class TableSpec(Generic[Row]):
    """A table: title, columns and rows, plus a line under it (e.g. how many rows were left out)."""

    title: str
    columns: Sequence[Column[Row]]
    rows: Sequence[Row]
    footer: str = ""

    def cells(self) -> list[list[str]]:
        return [[c.cell(r) for c in self.columns] for r in self.rows]

    def to_rich(self) -> FittedTable[Row]:
        """A renderable that fits itself to the console's width when printed."""
        return FittedTable(self)

    def to_markdown(self) -> str:
        align = {"left": ":---", "right": "---:", "center": ":---:"}
        lines = [
            "| " + " | ".join(md_text(c.header) for c in self.columns) + " |",
            "| " + " | ".join(align[c.justify] for c in self.columns) + " |",
        ]
        for row in self.rows:
            cells = (md_code(text) if c.code and text else md_text(text) for c, text in
                     ((c, c.cell(row)) for c in self.columns))
            lines.append("| " + " | ".join(cells) + " |")
        if self.footer:
            lines += ["", md_text(self.footer)]
        return "\n".join(lines)

    def to_html(self) -> str:
        head = "".join(f'<th class="{c.justify}">{html.escape(c.header)}</th>' for c in self.columns)
        rows = []
        for r in self.rows:
            cells = []
            for c in self.columns:
                text = html.escape(c.cell(r))
                if c.code and text:
                    text = f"<code>{text}</code>"
                cells.append(f'<td class="{c.justify} {css_class(c.style(r)) if c.style else ""}">{text}</td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
        foot = f"<p class='note'>{html.escape(self.footer)}</p>" if self.footer else ""
        return (f"<table><caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>{foot}")


#: Border and padding around columns of rich's default box: "│ a │ b │" is 3 per column plus 1.
_PER_COLUMN, _EDGE = 3, 1


class FittedTable(Generic[Row]):
    """A :class:`TableSpec` laid out for the width it is printed at: every column gets at least
    its minimum (the whole of every number and name, the longest word of text), columns that do
    not fit are dropped by priority, and text columns share what is left."""

    def __init__(self, spec: TableSpec[Row]) -> None:
        self.spec = spec
        self._cells = spec.cells()

    def layout(self, max_width: int) -> tuple[list[int], list[int]]:
        """(indices of the columns shown, their widths) for a console ``max_width`` wide."""
        cols = self.spec.columns
        natural, minimum = [], []
        for i, col in enumerate(cols):
            texts = [row[i] for row in self._cells]
            lines = [line for t in texts for line in t.splitlines()] or [""]
            longest = max(cell_len(line) for line in lines)
            words = [w for line in lines for w in line.split()] or [""]
            head_word = max(cell_len(w) for w in col.header.split()) if col.header.split() else 0
            natural.append(max(longest, cell_len(col.header)))
            minimum.append(max(longest if col.whole else max(cell_len(w) for w in words), head_word, 1))
        shown = list(range(len(cols)))
        # the first column (what the row is) goes last, whatever its priority
        order = sorted(shown[1:], key=lambda i: (cols[i].priority, -i))
        while len(shown) > 1 and sum(minimum[i] for i in shown) + _PER_COLUMN * len(shown) + _EDGE > max_width:
            shown.remove(order.pop(0))
        available = max_width - _PER_COLUMN * len(shown) - _EDGE
        if sum(natural[i] for i in shown) <= available:
            return shown, [natural[i] for i in shown]
        widths = {i: minimum[i] for i in shown}
        spare = available - sum(widths.values())
        # water-fill: the columns furthest from their natural width get the spare characters first
        while spare > 0:
            short = [i for i in shown if widths[i] < natural[i]]
            if not short:
                break
            i = max(short, key=lambda j: natural[j] - widths[j])
            widths[i] += 1
            spare -= 1
        return shown, [widths[i] for i in shown]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        spec = self.spec
        shown, widths = self.layout(options.max_width)
        table = Table(title=Text(spec.title, style="bold"), title_justify="left", header_style="bold")
        for i, width in zip(shown, widths):
            col = spec.columns[i]
            header = col.header
            if col.whole and cell_len(header) > width:
                header = "\n".join(textwrap.wrap(header, width=width, break_long_words=False))
            table.add_column(header, justify=col.justify, width=width, no_wrap=col.whole, overflow="fold")
        for row, cells in zip(spec.rows, self._cells):
            # Text, never markup: benchmark names like "test_step[resnet50_dcn_0000]" contain brackets.
            table.add_row(*(Text(cells[i], style=_style(spec.columns[i], row)) for i in shown))
        yield table
        dropped = [spec.columns[i].header for i in range(len(spec.columns)) if i not in shown]
        if dropped:
            yield Text(f"(columns left out at {options.max_width} characters: {', '.join(dropped)})", style="dim")
        if spec.footer:
            yield Text(spec.footer, style="dim")


def _style(column: Column[Row], row: Row) -> str:
    return column.style(row) if column.style is not None else ""


def css_class(style: str) -> str:
    """The HTML class standing for a rich style (``bold red`` → ``st-bold-red``)."""
    return "st-" + style.replace(" ", "-") if style else ""


#: Characters that mean something in (GitHub-flavoured) Markdown text or tables.
_MD_SPECIAL = set("\\`*_[]<>&|~#!")


def md_text(text: str) -> str:
    """``text`` as literal Markdown table-cell content: every metacharacter escaped, one line."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text.replace("\n", " "))


def md_code(text: str, *, in_table: bool = True) -> str:
    """``text`` as a Markdown code span (backticks fenced); in a table cell pipes are escaped too (GFM
    splits cells at them even inside code spans; elsewhere the backslash would show)."""
    text = text.replace("\n", " ")
    run = longest = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    if in_table:
        text = text.replace("|", "\\|")
    return f"{fence}{pad}{text}{pad}{fence}"


def format_value(metric: Metric, value: float | None) -> str:
    """``value`` (SI) in the metric's display unit. Exact metrics show every digit of the integer."""
    if value is None:
        return "—"
    shown = value * metric.scale
    if isinstance(metric.rule, Exact):
        decimals = max(0, round(-math.log10(metric.scale))) if metric.scale < 1 else 0
        text = f"{shown:,.{decimals}f}"
        # Trailing zeros add nothing to an exact count (1.120000000 G is 1.12 G).
        return text.rstrip("0").rstrip(".") if "." in text else text
    return significant(shown)


def significant(x: float, digits: int = 4) -> str:
    """``x`` with ``digits`` significant digits (all of the integer part when it is longer)."""
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= digits - 1:
        return f"{x:,.0f}"
    return f"{x:.{max(0, digits - 1 - magnitude)}f}"


def make_console(file: Any = None) -> Console:
    """A console for reports: wide when not a terminal (CI logs), so tables are not squeezed."""
    console = Console(file=file)
    if not console.is_terminal:
        console = Console(file=file, width=max(console.width, 160))
    return console


__all__ = [
    "Column", "FittedTable", "Level", "Message", "TableSpec",
    "css_class", "format_value", "make_console", "md_code", "md_text", "significant",
]
