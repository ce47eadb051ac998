"""The terminal (or a CI log): rich renderables of ``bench compare``'s and ``bench report``'s content.

Each function lays out what :mod:`bench.render.comparison` and :mod:`bench.render.report` say; the
command prints it on :func:`bench.render.table.make_console`, and a test renders it to a string.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group, RenderableType
from rich.text import Text

from bench.judge import module_diff as md
from bench.judge.verdicts import Comparison
from bench.record.exits import EXIT_OK
from bench.record.results import Results
from bench.render.comparison import (
    TERMINAL_MODULE_CASES,
    TERMINAL_ROWS,
    WHERE_TITLE,
    change_tables,
    headline,
    module_tables,
    summary_table,
    warnings_of,
    where_intro,
)
from bench.render.report import measured_tables
from bench.render.table import Level

_PREFIX: Mapping[Level, tuple[str, str]] = {
    Level.ERROR: ("⚠ ", "bold red"),
    Level.WARNING: ("note: ", "yellow"),
    Level.INFO: ("note: ", ""),
}


def comparison(c: Comparison, *, show_all: bool = False, limit: int | None = TERMINAL_ROWS,
                    modules_top: int | None = md.DEFAULT_TOP) -> RenderableType:
    """The report for a terminal or CI log. Without ``show_all`` each table lists every regression
    and failure plus at most ``limit`` other rows (the largest moves); under them, where each moved
    case's time went, ``modules_top`` modules per phase."""
    bound = None if show_all else limit
    parts: list[RenderableType] = [
        Text(f"bench compare  base: {c.base.path}  head: {c.head.path}", style="bold"),
    ]
    for m in warnings_of(c):
        prefix, style = _PREFIX[m.level]
        parts.append(Text(prefix + m.text, style=style))
    if not c.blocked:
        summary = summary_table(c, show_all=show_all, limit=bound)
        if summary.rows:
            parts.append(summary.to_rich())
        parts += [t.to_rich() for t in change_tables(c, show_all=show_all, limit=bound)]
        where, left = module_tables(c, top=modules_top, cases=None if show_all else TERMINAL_MODULE_CASES)
        if where:
            parts.append(Text(WHERE_TITLE, style="bold underline"))
            parts.append(Text(where_intro(left), style="dim"))
            parts += [t.to_rich() for t in where]
    style = "bold green" if c.exit_code == EXIT_OK else "bold red"
    parts.append(Text(headline(c), style=style))
    return Group(*parts)


def report(results: Results) -> RenderableType:
    """``bench report``'s terminal output: the measured numbers, one table per record kind."""
    return Group(*(t.to_rich() for t in measured_tables(results)))
