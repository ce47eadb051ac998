"""The one self-contained HTML page that holds the charts, and the sections of figures it is made of.

:func:`page` embeds plotly.js exactly once (the first figure is written with ``include_plotlyjs=True``,
the rest with ``False``), so the page works offline, and holds the page's whole style sheet. Nothing needs
a hover to be read: :func:`accuracy_caption` and :func:`module_caption` say in words what the marks mean,
and the page never scrolls sideways (figures are responsive, wide tables scroll in their own box).
:func:`run_charts` and :func:`module_charts` are the sections ``bench report`` and ``bench compare`` put on
their pages (:mod:`bench.render.html_report`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TypeAlias

import plotly.graph_objects as go
import plotly.io as pio

from bench.judge.module_diff import REST
from bench.record.schema import random_frozen_backbone
from bench.render.charts.plots import (
    FIGURE_HEIGHT,
    PHASES,
    Run,
    accuracy_boxplots,
    accuracy_spread,
    accuracy_vs_cost,
    module_breakdown,
    report_colors,
    report_of,
    suites_of,
    time_boxplots,
    training_curves,
)

#: A block of a page: a figure, or a trusted HTML fragment (callers escape their text).
Block: TypeAlias = "go.Figure | str"
#: Beyond this many cases per run a page of per-case charts is neither drawable nor readable (ten
#: thousand boxplots take a minute and gigabytes to build); the tables still list every case.
MAX_CHART_CASES = 500


def run_charts(runs: Sequence[Run], cost: str = "macs") -> list[Block]:
    """Every chart for ``runs``, with headings, and a note wherever a chart has nothing to draw."""
    largest = max((len({b.record.case for b in results}) for _, results in runs), default=0)
    if largest > MAX_CHART_CASES:
        return ["<h2>Charts</h2>", omitted(
            f"{largest} cases in one run, more than the {MAX_CHART_CASES} a page of charts can hold; "
            "bench report of a subset draws them"
        )]
    blocks: list[Block] = ["<h2>Accuracy against cost</h2>"]
    fig = accuracy_vs_cost(runs, cost)
    if fig is not None:
        blocks += [accuracy_caption(runs), fig]
    else:
        blocks.append(omitted("no case has both an accuracy and a cost"))
    colors = report_colors(runs)
    for suite in suites_of(runs):
        # the heading carries the report's colour, so a section reads as the panel of that colour above
        blocks.append(f"<h2 class='report' style='border-color:{colors[suite]}'>{html.escape(report_of(suite))}</h2>")
        for phase in PHASES:
            fig = time_boxplots(runs, suite, phase)
            blocks.append(fig if fig is not None else omitted(f"no {PHASES[phase].title} samples"))
        fig = accuracy_boxplots(runs, suite)
        blocks.append(fig if fig is not None else omitted("no test accuracy"))
        fig = training_curves(runs, suite)
        blocks.append(fig if fig is not None else omitted("no training curves"))
    return blocks


#: Module charts on one page at most: a figure per case, and 64 is the largest run archbench measures
#: (the four reports' 32 cases, twice over); the tables and --json hold every case.
MAX_MODULE_CHARTS = 64


def module_caption(runs: Sequence[Run]) -> str:
    """What the module charts show, in words."""
    sides = (" One bar per run (" + ", ".join(html.escape(label) for label, _ in runs) + "), the first on top."
             if len(runs) > 1 else "")
    return (
        "<p class='caption'>Per case measured with --bench-modules: forward time, backward time and MACs "
        "split into its modules (the leaves of the module tree), in model order, each segment labelled with its "
        "module's name where the name fits and listed in the legend in the same order." + sides
        + " Dark, hatched, bold: the deformable, attention and dynamic-convolution modules the reports study. "
        f"Grey “{REST}”: the rest of the phase's median (the parents' own operations)."
        " Times are medians of the breakdown's own rounds.</p>"
    )


def module_charts(runs: Sequence[Run], cases: Sequence[str] | None = None,
                  limit: int = MAX_MODULE_CHARTS) -> list[Block]:
    """The section of module charts: one figure per case with a breakdown (``cases``: those, in that
    order), at most ``limit``; nothing at all when no case has a breakdown."""
    if cases is None:
        seen: list[str] = []
        for _, res in runs:
            seen += [k for k, c in res.cases().items() if c.step is not None and c.step.modules and k not in seen]
        cases = seen
    drawn = [fig for case in cases[:limit] if (fig := module_breakdown(runs, case)) is not None]
    if not drawn:
        return []
    blocks: list[Block] = ["<h2>Time and MACs per module</h2>", module_caption(runs), *drawn]
    if len(cases) > limit:
        blocks.append(omitted(f"{len(cases) - limit} more cases with a breakdown; the first {limit} are drawn"))
    return blocks


def accuracy_caption(runs: Sequence[Run]) -> str:
    """What the accuracy-against-cost chart shows, in words, so that nothing in it needs a hover."""
    parts = [(
        "One panel per report, in the report's colour, on one log-scaled cost axis; the buttons above the "
        "panels choose the cost. Each point is a case, labelled with its name without the suite prefix; "
        "points that coincide share one label. The line is the report's Pareto front: the cases no cheaper "
        "case beats on accuracy."
    )]
    cases = [c for _, res in runs for c in res.cases().values() if c.train is not None]
    if any(random_frozen_backbone(c.train) for c in cases if c.train is not None):
        parts.append("Hollow points: only a head trained, on a backbone frozen at random initialisation; their "
                     "accuracy measures that head, not the architecture, and they are left off the front.")
    if any(accuracy_spread(c.train) is not None for c in cases if c.train is not None):
        parts.append("Error bars: ±1 standard deviation of the test accuracy over the seeds.")
    if len(runs) > 1:
        names = " → ".join(html.escape(label) for label, _ in runs)
        parts.append(f"Runs {names}: the earlier faint, the last solid, its front solid and the earlier dotted; "
                     "an arrow leads from each case's earlier point to its later one. A case without an "
                     "arrow did not move by a marker's width.")
    return "<p class='caption'>" + " ".join(parts) + "</p>"


def omitted(why: str) -> str:
    return f"<p class='omitted'>Chart omitted: {html.escape(why)}.</p>"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222;
       padding: 0 20px; box-sizing: border-box; overflow-wrap: anywhere; }
.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; overflow-wrap: normal; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
td.right, th.right { text-align: right; font-variant-numeric: tabular-nums; }
.st-bold-red { color: #b00; font-weight: bold; } .st-green { color: #070; } .st-yellow { color: #a60; }
.st-magenta { color: #909; } .st-cyan { color: #077; } .st-dim { color: #888; } .st-bold { font-weight: bold; }
.warning { background: #fee; border-left: 4px solid #c00; padding: 0.5em; font-weight: bold; }
.headline.exit-0 { color: #070; font-weight: bold; } .headline { color: #b00; font-weight: bold; }
.omitted { color: #888; font-style: italic; }
.chart { margin: 1em 0; max-width: 100%; }
.caption { max-width: 70em; color: #333; }
h2.report { border-left: 8px solid; padding-left: 0.4em; }
"""


def page(title: str, blocks: Iterable[Block]) -> str:
    """One self-contained HTML page. plotly.js is embedded once, with the first figure; figure divs
    are ``chart-0``, ``chart-1``, ... in page order."""
    parts: list[str] = []
    n = 0
    for block in blocks:
        if isinstance(block, go.Figure):
            div = pio.to_html(
                block,
                include_plotlyjs=n == 0,
                full_html=False,
                div_id=f"chart-{n}",
                config={"displaylogo": False, "responsive": True},
                default_height=f"{FIGURE_HEIGHT}px",
            )
            parts.append(f"<div class='chart'>{div}</div>")
            n += 1
        elif block.lstrip().startswith("<table"):
            # a table wider than the window scrolls inside its own box, never the page
            parts.append(f"<div class='wide'>{block}</div>")
        else:
            parts.append(block)
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def figures(blocks: Iterable[Block]) -> list[go.Figure]:
    """The figures among ``blocks``, in page order (``chart-0`` first)."""
    return [b for b in blocks if isinstance(b, go.Figure)]
