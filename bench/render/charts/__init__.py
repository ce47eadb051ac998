"""Charts of one or more runs, and the self-contained HTML page that holds them.

Three modules, in the order the data flows: :mod:`~bench.render.charts.labels` (where a scatter's labels go:
pure geometry), :mod:`~bench.render.charts.plots` (plotly figures built from records) and
:mod:`~bench.render.charts.page` (the sections of figures and the page, with its one style sheet). The names
below are the package's public face; docs/charts.md says what each chart shows.
"""

from __future__ import annotations

from bench.render.charts.labels import Frame, Label, place_labels
from bench.render.charts.page import (
    MAX_CHART_CASES,
    MAX_MODULE_CHARTS,
    Block,
    accuracy_caption,
    figures,
    module_caption,
    module_charts,
    page,
    run_charts,
)
from bench.render.charts.plots import (
    COSTS,
    FIGURE_HEIGHT,
    ONE_SEED_NOTE,
    REPORT_COLORS,
    Cost,
    Run,
    accuracy_boxplots,
    accuracy_spread,
    accuracy_vs_cost,
    log_ticks,
    module_breakdown,
    module_label,
    pareto_front,
    report_colors,
    report_of,
    run_styles,
    short_name,
    suites_of,
    time_boxplots,
    training_curves,
)

__all__ = [
    "COSTS", "FIGURE_HEIGHT", "MAX_CHART_CASES", "MAX_MODULE_CHARTS", "ONE_SEED_NOTE", "REPORT_COLORS", "Block",
    "Cost", "Frame", "Label", "Run", "accuracy_boxplots", "accuracy_caption", "accuracy_spread", "accuracy_vs_cost",
    "figures", "log_ticks", "module_breakdown", "module_caption", "module_charts", "module_label", "page",
    "pareto_front", "place_labels", "report_colors", "report_of", "run_charts", "run_styles", "short_name",
    "suites_of", "time_boxplots", "training_curves",
]
