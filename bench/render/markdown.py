"""Markdown: ``bench compare --markdown``, for a CI job summary or a pull-request comment (GitHub caps
a job summary at 1 MiB, hence :data:`~bench.render.comparison.MARKDOWN_ROWS`)."""

from __future__ import annotations

from collections.abc import Mapping

from bench.judge import module_diff as md
from bench.judge.verdicts import Comparison
from bench.record.exits import EXIT_INCOMPARABLE, EXIT_OK, EXIT_REGRESSION
from bench.render.comparison import (
    MARKDOWN_MODULE_CASES,
    MARKDOWN_ROWS,
    WHERE_TITLE,
    change_tables,
    headline,
    module_tables,
    run_text,
    summary_table,
    warnings_of,
    where_intro,
)
from bench.render.table import Level, md_code, md_text

_PREFIX: Mapping[Level, str] = {Level.ERROR: "Warning", Level.WARNING: "Note", Level.INFO: "Note"}


def comparison(c: Comparison, *, limit: int | None = MARKDOWN_ROWS, modules_top: int | None = md.DEFAULT_TOP) -> str:
    """For a CI job summary or a pull-request comment. Every regression and failure is listed; the
    other rows of each table are bounded by ``limit`` (``None``: all)."""
    icon = {EXIT_OK: "✅", EXIT_REGRESSION: "❌", EXIT_INCOMPARABLE: "⚠️"}.get(c.exit_code, "")
    lines = [
        f"## archbench: {icon} {md_text(headline(c))}",
        "",
        (f"base {md_code(c.base.path, in_table=False)} ({md_text(run_text(c.base))}) → "
         f"head {md_code(c.head.path, in_table=False)} ({md_text(run_text(c.head))})"),
        "",
    ]
    for m in warnings_of(c):
        lines += [f"> **{_PREFIX[m.level]}:** {md_text(m.text)}", ""]
    if c.blocked:
        lines += ["Pass `--allow-incomparable` to compare these runs anyway.", ""]
        return "\n".join(lines)
    summary = summary_table(c, limit=limit)
    if summary.rows:
        lines += [f"### {md_text(summary.title)}", "", summary.to_markdown(), ""]
    for table in change_tables(c, limit=limit):
        lines += [f"#### {md_text(table.title)}", "", table.to_markdown(), ""]
    where, left = module_tables(c, top=modules_top, cases=MARKDOWN_MODULE_CASES)
    if where:
        lines += [f"### {WHERE_TITLE}", "", md_text(where_intro(left)), ""]
        for module_spec in where:
            lines += [f"#### {md_text(module_spec.title)}", "", module_spec.to_markdown(), ""]
    everything = summary_table(c, show_all=True, limit=limit)
    lines += ["<details><summary>All benchmarks</summary>", "", everything.to_markdown(), "", "</details>", ""]
    return "\n".join(lines)
