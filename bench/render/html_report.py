"""HTML: the one self-contained page of ``bench compare --html`` and of ``bench report --html`` (and the
page ``pytest bench/`` writes beside its JSON): tables first, then the charts of the run(s)
(:mod:`bench.render.charts`), on :func:`bench.render.charts.page`'s page and style sheet."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from bench.judge import module_diff as md
from bench.judge.verdicts import Comparison
from bench.record.results import Results
from bench.render import charts
from bench.render.comparison import (
    HTML_ROWS,
    WHERE_TITLE,
    change_tables,
    headline,
    module_tables,
    moved_module_diffs,
    run_text,
    summary_table,
    warnings_of,
    where_intro,
)
from bench.render.report import measured_tables, reported_table
from bench.render.table import Level


def comparison(c: Comparison, *, cost: str = "macs", limit: int | None = HTML_ROWS,
            modules_top: int | None = md.DEFAULT_TOP) -> str:
    """A single self-contained page: the verdict tables (every regression and failure, the other
    rows bounded by ``limit``), then the charts for both runs."""
    blocks: list[charts.Block] = [
        f"<h1>archbench compare</h1><p class='headline exit-{c.exit_code}'>{html.escape(headline(c))}</p>",
        (f"<p>base <code>{html.escape(c.base.path)}</code> ({html.escape(run_text(c.base))}) → head "
         f"<code>{html.escape(c.head.path)}</code> ({html.escape(run_text(c.head))})</p>"),
    ]
    for m in warnings_of(c):
        css = "note" if m.level is Level.INFO else "warning"  # charts.page styles .warning
        blocks.append(f"<p class='{css} level-{m.level.value}'>{html.escape(m.text)}</p>")
    if not c.blocked:
        blocks.append(summary_table(c, show_all=True, limit=limit).to_html())
        blocks += [t.to_html() for t in change_tables(c, limit=limit)]
        blocks += _where_blocks(c, modules_top)
    blocks += charts.run_charts([("base", c.base), ("head", c.head)], cost=cost)
    return charts.page("archbench compare", blocks)


def _where_blocks(c: Comparison, top: int | None) -> list[Any]:
    """The "where it moved" section: the tables, then per moved case the bars of time and MACs per
    module, base beside head (nothing at all for runs without breakdowns)."""
    diffs = moved_module_diffs(c)
    if not diffs:
        return []
    tables, _ = module_tables(c, top=top)
    blocks: list[Any] = [
        (f"<h2>{html.escape(WHERE_TITLE)}</h2>"
         f"<p class='caption'>{html.escape(where_intro(0))}</p>"),
        *(t.to_html() for t in tables),
    ]
    blocks += charts.module_charts([("base", c.base), ("head", c.head)], cases=[b.case for b, _ in diffs])
    return blocks


def report_blocks(results: Results, cost: str = "macs") -> list[charts.Block]:
    """The page's blocks: heading, measured tables, the charts, and the report-numbers table."""
    env = results.env
    blocks: list[charts.Block] = [
        f"<h1>archbench report: {html.escape(results.path)}</h1>",
        "<p>{} · {} · profile {} · torch {} · commit {}</p>".format(
            *(html.escape(str(x)) for x in (env.device, env.device_name, env.profile, env.torch, results.commit))
        ),
    ]
    run = [(Path(results.path).name, results)]
    blocks += charts.run_charts(run, cost=cost)
    blocks += charts.module_charts(run)  # nothing for a run measured without --bench-modules
    blocks.append("<h2>Reported and measured</h2>")
    blocks.append(
        "<p>Measured accuracy comes from a short fixed training budget on the profile's dataset; it is not "
        "expected to match the report's, which trained far longer on the original data.</p>"
    )
    blocks.append(reported_table(results).to_html())
    blocks.append("<h2>Measured</h2>")
    blocks += [t.to_html() for t in measured_tables(results)]
    return blocks


def report(results: Results, cost: str = "macs") -> str:
    """``bench report``'s page: one run's tables and charts."""
    return charts.page(f"archbench report: {results.path}", report_blocks(results, cost))
