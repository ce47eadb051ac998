"""Plotly figures built from records, each taking one or more labelled runs, so that ``bench report``
draws one run and ``bench compare`` draws base and head side by side:

* :func:`accuracy_vs_cost` — test accuracy against a chosen cost (MACs, params, step time, memory,
  energy per step where measured; buttons switch between them), one panel per report on a log cost
  axis, every point labelled (:mod:`bench.render.charts.labels` keeps labels apart), each report's Pareto
  front, hollow points for heads trained on random frozen backbones, seed error bars, and with base and
  head an arrow from each base point to its head point;
* :func:`time_boxplots` — per case, a boxplot of time (seconds per training epoch, or per training
  step) with test accuracy as a line on a second axis, one figure per report — the figures of report 000;
* :func:`accuracy_boxplots` — per case, test accuracy over the seeds (``--bench-seeds N``);
* :func:`training_curves` — per-epoch training loss and validation accuracy;
* :func:`module_breakdown` — per case with a breakdown (``--bench-modules``), stacked bars of forward
  time, backward time and MACs per module, one bar per run.

A report has one colour (:func:`report_colors`) in every chart of a page; with several runs the earlier
are faint and the last solid (:func:`run_styles`). Units and scales come from
:data:`bench.record.metrics.METRICS`.
"""

from __future__ import annotations

import html
import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeGuard

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from bench.judge.module_diff import REST, emphasised, leaves
from bench.record.metrics import METRICS, Metric
from bench.record.results import CaseRecords, Results
from bench.record.schema import Record, quantity, random_frozen_backbone, seed_values
from bench.render.charts.labels import MARKER, Frame, label_annotation, place_labels

#: A run to draw, with the label its traces carry ("base", "head", or the file name).
Run: TypeAlias = tuple[str, Results]


FIGURE_HEIGHT = 480
_PALETTE = qualitative.Dark24
_RUN_DASH = ("solid", "dash", "dot", "dashdot")
_RUN_SYMBOL = ("circle", "diamond", "square", "triangle-up")


@dataclass(frozen=True)
class Cost:
    """An x axis for the accuracy chart: a label, a display unit and how to read it from a case."""

    name: str
    label: str
    unit: str
    scale: float
    value: Callable[[CaseRecords], float | None]


def _metric_cost(name: str, metric: Metric) -> Cost:
    return Cost(name, metric.label, metric.unit, metric.scale, lambda c: c.value(metric.key))


_TRAIN_PHASES = ("forward", "backward", "optimizer")


def _step_values(c: CaseRecords, template: str) -> list[float | None]:
    if c.step is None:
        return [None] * len(_TRAIN_PHASES)
    return [getattr(c.step, template.format(p)) for p in _TRAIN_PHASES]


def _step_time(c: CaseRecords) -> float | None:
    parts = [p for p in _step_values(c, "time_{}_s") if p is not None]
    return sum(parts) if len(parts) == len(_TRAIN_PHASES) else None


def _step_memory(c: CaseRecords) -> float | None:
    # Each phase's peak is measured above the memory live when it began; the step's peak is the
    # largest of them (the backward pass, on every model we have).
    present = [p for p in _step_values(c, "mem_{}_bytes") if p is not None]
    return float(max(present)) if present else None


_TIME = METRICS["time_forward_s"]
_MEM = METRICS["mem_backward_bytes"]
COSTS: Mapping[str, Cost] = {
    "macs": _metric_cost("macs", METRICS["macs_forward"]),
    "params": _metric_cost("params", METRICS["params_total"]),
    "step_time": Cost("step_time", "training step time", _TIME.unit, _TIME.scale, _step_time),
    "memory": Cost("memory", "peak training-step memory", _MEM.unit, _MEM.scale, _step_memory),
    # only offered where a record has it: accuracy_vs_cost drops costs no case has
    "energy": _metric_cost("energy", METRICS["energy_step_j"]),
}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x, higher y), by ascending x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def accuracy_spread(record: Record, key: str = "accuracy_test") -> float | None:
    """The spread over seeds of ``key`` (a fraction): the record's stored ``<key>_spread`` when it has one,
    else the sample standard deviation of :func:`~bench.record.schema.seed_values`; ``None`` with one seed."""
    stored = getattr(record, f"{key}_spread", None)
    if stored is not None:
        return float(stored)
    values = seed_values(record, key)
    return statistics.stdev(values) if len(values) > 1 else None


def short_name(case: str, suite: str) -> str:
    """A case's label inside its report's panel: the name without the suite prefix the panel title
    already says ("dogbreed_cnn" → "cnn"); other names stay whole."""
    prefix = f"{suite}_"
    return case[len(prefix):] if case.startswith(prefix) and len(case) > len(prefix) else case


#: One colour per report, the same in every chart of a page (Okabe–Ito: told apart also with the
#: common colour-vision deficiencies; yellow last, as it is faint on white).
REPORT_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


def report_colors(runs: Sequence[Run]) -> dict[str, str]:
    """Suite → colour: the registry's report order first, so a report keeps its colour on every page."""
    known = list(_suite_modules())
    others = sorted({s for s in suites_of(runs) if s not in known})
    order = known + others
    return {s: REPORT_COLORS[order.index(s) % len(REPORT_COLORS)] for s in suites_of(runs)}


def run_styles(n: int) -> list[dict[str, float]]:
    """Per run, how strongly it is drawn: with several runs (base, head) the earlier ones are faint and
    the last solid, so the newest state is what stands out."""
    return [{"opacity": 1.0 if r == n - 1 else _FAINT} for r in range(n)]


_FAINT = 0.35
#: Geometry the label placement assumes: the content width of the page in a 1280 px window (body
#: padding 20 px a side), the height of one panel, and the figure margins that hold the title, the cost
#: buttons and the panel titles above and the axis titles below.
_NOMINAL_WIDTH = 1240
_PANEL_HEIGHT = 320
_PANEL_GAP = 100  # px between rows: an x-axis title, then the next panel's two-line title
_MARGIN = {"l": 60, "r": 20, "t": 125, "b": 60}
_BUTTONS_Y = 48  # px from the top panel to the foot of the cost buttons, above its two-line title
_FROZEN_NOTE = "hollow ○: only a head trained, on random frozen features (not the architecture's accuracy)"


@dataclass(frozen=True)
class _Point:
    """One case drawn on one cost axis, in display units."""

    case: str
    x: float
    y: float
    spread: float | None
    hollow: bool


def _points(cases: Mapping[str, CaseRecords], axis: Cost, accuracy: str) -> list[_Point]:
    acc = METRICS[accuracy]
    points: list[_Point] = []
    for c in cases.values():
        x, y = axis.value(c), c.value(accuracy)
        # a log axis cannot place zero or a negative cost
        if x is None or y is None or x <= 0:
            continue
        spread = accuracy_spread(c.train, accuracy) if c.train is not None else None
        hollow = c.train is not None and random_frozen_backbone(c.train)
        points.append(_Point(c.case, x * axis.scale, y * acc.scale, None if spread is None else spread * acc.scale, hollow))
    return points


def _log_range(values: Iterable[float]) -> tuple[float, float]:
    """A log10 x range around ``values`` with room for a label beside the outermost points."""
    logs = [math.log10(v) for v in values]
    lo, hi = min(logs), max(logs)
    pad = max(hi - lo, 1.0) * 0.08
    return lo - pad, hi + pad


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Ticks at 1, 2 and 5 of every decade inside the log10 range [lo, hi], written out whole ("20",
    not plotly's "2" after "10"), so a reader needs no decade to infer."""
    values = [m * 10.0**k for k in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
    shown = [v for v in values if lo <= math.log10(v) <= hi]
    return shown, [f"{v:g}" for v in shown]


def _linear_range(values: Sequence[float], spreads: Sequence[float]) -> tuple[float, float]:
    lo = min(v - s for v, s in zip(values, spreads))
    hi = max(v + s for v, s in zip(values, spreads))
    # room above and below for labels; a few points of accuracy at least, so that one case is not a
    # panel of noise magnified
    pad = max(hi - lo, 4.0) * 0.15
    return lo - pad, hi + pad


def accuracy_vs_cost(runs: Sequence[Run], cost: str = "macs", accuracy: str = "accuracy_test") -> go.Figure | None:
    """Accuracy against cost, one panel per report on one log-scaled cost axis; ``None`` when no case has
    both. Buttons switch the cost (every cost with data: one set of traces each, one shown). Points are
    labelled with their case and coloured by report; each report's Pareto front is a line; a random
    frozen backbone's point is hollow; error bars are ±1 standard deviation over seeds. With several runs
    (base, head) every run is drawn, the earlier ones faint, and an arrow leads from each case's point in
    one run to its point in the next."""
    if cost not in COSTS:
        raise KeyError(f"unknown cost {cost!r}; choose from {sorted(COSTS)}")
    acc = METRICS[accuracy]
    suites = suites_of(runs)
    per_run = [{k: c for k, c in res.cases().items()} for _, res in runs]
    drawn = {
        name: {s: [_points({k: c for k, c in cases.items() if c.suite == s}, axis, accuracy) for cases in per_run]
               for s in suites}
        for name, axis in COSTS.items()
    }
    drawn = {n: d for n, d in drawn.items() if any(p for by_run in d.values() for p in by_run)}
    if not drawn:
        return None
    panels = [s for s in suites if any(p for d in drawn.values() for p in d[s])]
    shown = cost if cost in drawn else next(iter(drawn))
    cols = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / cols)
    plot_height = rows * _PANEL_HEIGHT + (rows - 1) * _PANEL_GAP
    fig = make_subplots(rows=rows, cols=cols, vertical_spacing=_PANEL_GAP / plot_height if rows > 1 else 0.0,
                        horizontal_spacing=0.08)
    colors = report_colors(runs)
    styles = run_styles(len(runs))
    plot_width = _NOMINAL_WIDTH - _MARGIN["l"] - _MARGIN["r"]
    axes: dict[str, tuple[str, str, tuple[float, float], Frame | None]] = {}
    y_ranges: dict[str, tuple[float, float]] = {}
    for suite in panels:
        every = [p for d in drawn.values() for pts in d[suite] for p in pts]
        y_ranges[suite] = _linear_range([p.y for p in every], [p.spread or 0.0 for p in every])
    annotations: dict[str, list[dict[str, object]]] = {}
    layout_per_cost: dict[str, dict[str, object]] = {}
    visible: list[str] = []
    for name, by_suite in drawn.items():
        axis = COSTS[name]
        x_range = _log_range(p.x for pts in by_suite.values() for by_run in pts for p in by_run)
        anns: list[dict[str, object]] = []
        relayout: dict[str, object] = {}
        for k, suite in enumerate(panels):
            row, col = k // cols + 1, k % cols + 1
            xa = fig.get_subplot(row, col).xaxis.plotly_name.replace("axis", "")
            ya = fig.get_subplot(row, col).yaxis.plotly_name.replace("axis", "")
            xdom = fig.layout[f"xaxis{xa[1:]}"].domain
            ydom = fig.layout[f"yaxis{ya[1:]}"].domain
            frame = Frame(*x_range, *y_ranges[suite], plot_width * (xdom[1] - xdom[0]),
                           plot_height * (ydom[1] - ydom[0]))
            axes[suite] = (xa, ya, (xdom[0], xdom[1]), frame)
            relayout[f"xaxis{xa[1:]}.range"] = list(x_range)
            relayout[f"xaxis{xa[1:]}.tickvals"], relayout[f"xaxis{xa[1:]}.ticktext"] = log_ticks(*x_range)
            relayout[f"xaxis{xa[1:]}.title.text"] = f"{axis.label} ({axis.unit}, log scale)"
            by_run = by_suite[suite]
            owner = {p.case: r for r, pts in enumerate(by_run) for p in pts}  # the latest run labels a case
            labelled = [(p.x, p.y, short_name(p.case, suite)) for r, pts in enumerate(by_run) for p in pts
                        if owner[p.case] == r]
            others = [(p.x, p.y) for r, pts in enumerate(by_run) for p in pts if owner[p.case] != r]
            anns += [label_annotation(lab, xa, ya) for lab in place_labels(labelled, frame, others)]
            color = colors[suite]
            for r, pts in enumerate(by_run):
                label = runs[r][0]
                if pts:
                    fig.add_trace(_point_trace(pts, label, color, styles[r]["opacity"], axis, acc), row=row, col=col)
                    visible.append(name)
                front = pareto_front([(p.x, p.y) for p in pts if not p.hollow])
                solid = [p for p in pts if not p.hollow]
                if front:
                    fig.add_trace(go.Scatter(
                        x=[solid[i].x for i in front], y=[solid[i].y for i in front], mode="lines",
                        name=f"{label} Pareto front", line={"color": color, "width": 1.5, "shape": "hv",
                                                            "dash": "solid" if r == len(runs) - 1 else "dot"},
                        opacity=styles[r]["opacity"], hoverinfo="skip", showlegend=False,
                        meta={"cases": [solid[i].case for i in front]},
                    ), row=row, col=col)
                    visible.append(name)
            anns += _moves(by_run, frame, xa, ya, color)
        layout_per_cost[name] = relayout
        annotations[name] = anns
    titles = _panel_titles(panels, drawn, axes, colors)
    titles.append({"text": "cost axis:", "xref": "paper", "yref": "paper", "x": 0.0, "xanchor": "right",
                   "y": 1.0 + _BUTTONS_Y / plot_height, "yanchor": "bottom", "yshift": 6, "xshift": -6,
                   "showarrow": False, "name": "buttons"})
    for trace, name in zip(fig.data, visible):
        trace.visible = name == shown
    buttons = []
    for name in drawn:
        buttons.append({
            "label": COSTS[name].label, "method": "update",
            "args": [{"visible": [n == name for n in visible]},
                     {**layout_per_cost[name], "annotations": titles + annotations[name]}],
        })
    fig.update_layout(
        title={"text": f"{acc.label} ({acc.unit}) against cost, one panel per report", "x": 0.0, "xanchor": "left",
               "y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 8}},
        height=plot_height + _MARGIN["t"] + _MARGIN["b"], margin=_MARGIN, showlegend=False,
        annotations=titles + annotations[shown],
        updatemenus=[{
            "type": "buttons", "direction": "right", "buttons": buttons, "active": list(drawn).index(shown),
            "x": 0.0, "xanchor": "left", "y": 1.0 + _BUTTONS_Y / plot_height, "yanchor": "bottom",
            "pad": {"l": 0, "t": 0, "r": 0, "b": 0}, "showactive": True,
        }],
    )
    fig.update_layout(layout_per_cost[shown])
    fig.update_xaxes(type="log")
    for suite, (_, ya, _, _) in axes.items():
        fig.layout[f"yaxis{ya[1:]}"].update(range=list(y_ranges[suite]), title_text=f"{acc.label} ({acc.unit})")
    return fig


def _point_trace(pts: Sequence[_Point], label: str, color: str, opacity: float, axis: Cost, acc: Metric) -> go.Scatter:
    spreads = [p.spread or 0.0 for p in pts]
    return go.Scatter(
        x=[p.x for p in pts], y=[p.y for p in pts], mode="markers", name=label, hovertext=[p.case for p in pts],
        marker={"color": color, "size": MARKER, "symbol": ["circle-open" if p.hollow else "circle" for p in pts],
                "line": {"width": 2, "color": color}},
        error_y={"type": "data", "array": spreads, "visible": any(spreads), "color": color, "thickness": 1.2, "width": 4},
        opacity=opacity, meta={"cases": [p.case for p in pts], "hollow": [p.hollow for p in pts]},
        hovertemplate="%{hovertext}<br>%{x:.4g} " + axis.unit + "<br>%{y:.2f} " + acc.unit + "<extra>" + label + "</extra>",
    )


def _moves(by_run: Sequence[Sequence[_Point]], frame: Frame, xa: str, ya: str, color: str) -> list[dict[str, object]]:
    """An arrow from each case's point in one run to its point in the next, where it moved visibly.
    Annotations on a log axis take log10 coordinates."""
    arrows: list[dict[str, object]] = []
    for before, after in itertools.pairwise(by_run):
        was = {p.case: p for p in before}
        for p in after:
            q = was.get(p.case)
            if q is None or math.dist(frame.px(q.x, q.y), frame.px(p.x, p.y)) < MARKER:
                continue  # under its own marker an arrow is a smudge; the caption says so
            arrows.append({
                "x": math.log10(p.x), "y": p.y, "ax": math.log10(q.x), "ay": q.y,
                "xref": xa, "yref": ya, "axref": xa, "ayref": ya, "text": "", "showarrow": True,
                "arrowhead": 2, "arrowsize": 1.2, "arrowwidth": 1.5, "arrowcolor": color,
                "standoff": MARKER / 2, "startstandoff": MARKER / 2, "name": f"move {p.case}",
            })
    return arrows


def _panel_titles(
    panels: Sequence[str], drawn: Mapping[str, Mapping[str, Sequence[Sequence[_Point]]]],
    axes: Mapping[str, tuple[str, str, tuple[float, float], Frame | None]], colors: Mapping[str, str],
) -> list[dict[str, object]]:
    """Each panel's title (its report, in the report's colour) and, under it, a note on what is drawn
    differently there: hollow points, and a front left out because no point could be on it."""
    titles: list[dict[str, object]] = []
    for suite in panels:
        _, ya, xdom, _ = axes[suite]
        every = [p for d in drawn.values() for pts in d[suite] for p in pts]
        notes = []
        if any(p.hollow for p in every):
            notes.append(_FROZEN_NOTE if not all(p.hollow for p in every)
                         else _FROZEN_NOTE + "; so no Pareto front")
        text = f"<b>{html.escape(report_of(suite), quote=False)}</b>"
        if notes:
            text += "<br><span style='font-size:11px;color:#555'>" + html.escape("; ".join(notes), quote=False) + "</span>"
        titles.append({
            "text": text, "xref": "paper", "yref": f"{ya} domain", "x": xdom[0], "y": 1.0, "xanchor": "left",
            "yanchor": "bottom", "yshift": 4, "showarrow": False, "align": "left",
            "font": {"size": 14, "color": colors[suite]}, "name": f"title {suite}",
        })
    return titles


@dataclass(frozen=True)
class _Phase:
    """A time series a boxplot can show: its title, a short label, the metric giving unit and scale,
    and how to read the samples from a case."""

    title: str
    label: str
    metric: Metric
    samples: Callable[[CaseRecords], list[float] | None]


PHASES: Mapping[str, _Phase] = {
    "epoch": _Phase("time per training epoch", "epoch time", METRICS["time_epoch_s"],
                    lambda c: c.train.samples_epoch_s if c.train else None),
    "step": _Phase("time per training step (forward + backward + optimizer)", "step time", _TIME,
                   lambda c: _step_samples(c)),
}


def _step_samples(c: CaseRecords) -> list[float] | None:
    """Per-round step time: the phases are timed in the same rounds, so their samples add up."""
    if c.step is None:
        return None
    phases = [c.step.samples(p) or [] for p in ("forward", "backward", "optimizer")]
    if not all(phases) or len({len(p) for p in phases}) != 1:
        return None
    return [sum(values) for values in zip(*phases)]


def _case_axis(order: Sequence[str], suite: str) -> dict[str, object]:
    """A category axis of cases in ``order``, ticks labelled without the suite prefix the title says."""
    return {"type": "category", "categoryorder": "array", "categoryarray": list(order),
            "tickmode": "array", "tickvals": list(order), "ticktext": [short_name(n, suite) for n in order],
            "automargin": True}


_ACCURACY_LINE = "#333333"  # accuracy on a second axis: neutral, so it is not read as another report


def time_boxplots(
    runs: Sequence[Run], suite: str, phase: str = "epoch", accuracy: str = "accuracy_test"
) -> go.Figure | None:
    """Per case of ``suite``: a boxplot of ``phase`` time per run, in the report's colour (earlier runs
    faint), and accuracy as a dark line on a second axis (hollow where a head trained on a random frozen
    backbone). ``None`` when no case of the suite has samples."""
    spec = PHASES[phase]
    title, metric, samples_of = spec.title, spec.metric, spec.samples
    acc = METRICS[accuracy]
    per_run = [(label, {k: c for k, c in res.cases().items() if c.suite == suite}) for label, res in runs]
    order = _ordered({k for _, cases in per_run for k, c in cases.items() if samples_of(c)}, per_run)
    if not order:
        return None
    color = report_colors(runs).get(suite, REPORT_COLORS[0])
    styles = run_styles(len(runs))
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for r, (label, cases) in enumerate(per_run):
        xs: list[str] = []
        ys: list[float] = []
        for name in order:
            samples = samples_of(cases[name]) if name in cases else None
            if samples:
                xs += [name] * len(samples)
                ys += [s * metric.scale for s in samples]
        if ys:
            fig.add_trace(
                go.Box(
                    x=xs, y=ys, name=f"{label} {spec.label}", legendgroup=label, offsetgroup=label,
                    boxpoints="all", jitter=0.4, pointpos=0, marker={"color": color, "size": 4}, line={"color": color},
                    opacity=styles[r]["opacity"],
                ),
                secondary_y=False,
            )
        points = [(n, cases[n]) for n in order if n in cases and cases[n].value(accuracy) is not None]
        if points:
            fig.add_trace(
                go.Scatter(
                    x=[n for n, _ in points], y=[c.value(accuracy) * acc.scale for _, c in points],  # type: ignore[operator]
                    mode="lines+markers", name=f"{label} {acc.label} (right axis)", legendgroup=label,
                    line={"color": _ACCURACY_LINE, "dash": "solid" if r == len(runs) - 1 else "dot", "width": 1.5},
                    marker={"color": _ACCURACY_LINE, "size": 8, "line": {"width": 2, "color": _ACCURACY_LINE},
                            "symbol": ["circle-open" if _frozen(c) else "diamond" for _, c in points]},
                    opacity=styles[r]["opacity"],
                ),
                secondary_y=True,
            )
    fig.update_layout(
        title=f"{report_of(suite)}: {title}, with {acc.label}",
        boxmode="group", height=FIGURE_HEIGHT, xaxis=_case_axis(order, suite), margin={"r": 60},
        legend={"orientation": "h", "x": 0.0, "y": 1.0, "yanchor": "bottom", "xanchor": "left"},
    )
    fig.update_yaxes(title_text=f"{spec.label} ({metric.unit})", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text=f"{acc.label} ({acc.unit})", secondary_y=True, tickformat=".1f", showgrid=False)
    return fig


def _frozen(c: CaseRecords) -> bool:
    return c.train is not None and random_frozen_backbone(c.train)


#: Shown under a per-report accuracy boxplot drawn from one seed per case.
ONE_SEED_NOTE = "one seed per case: each box is a single value; --bench-seeds N trains N seeds and draws real boxes"


def accuracy_boxplots(runs: Sequence[Run], suite: str, accuracy: str = "accuracy_test") -> go.Figure | None:
    """Per case of ``suite``: a boxplot of ``accuracy`` over the seeds that finished
    (:func:`~bench.record.schema.seed_values`), per run, in the report's colour (earlier runs faint); hollow
    points where a head trained on a random frozen backbone. ``None`` when no case has an accuracy."""
    acc = METRICS[accuracy]
    per_run = [(label, {k: c for k, c in res.cases().items() if c.suite == suite}) for label, res in runs]
    values = {
        (r, k): seed_values(c.train, accuracy)
        for r, (_, cases) in enumerate(per_run) for k, c in cases.items() if c.train is not None
    }
    order = _ordered({k for (_, k), v in values.items() if v}, per_run)
    if not order:
        return None
    color = report_colors(runs).get(suite, REPORT_COLORS[0])
    styles = run_styles(len(runs))
    fig = go.Figure()
    for r, (label, cases) in enumerate(per_run):
        for hollow in (False, True):
            names = [n for n in order if values.get((r, n)) and _frozen(cases[n]) == hollow]
            if not names:
                continue
            fig.add_trace(go.Box(
                x=[n for n in names for _ in values[(r, n)]],
                y=[v * acc.scale for n in names for v in values[(r, n)]],
                name=f"{label} {acc.label}" + (" (head on random frozen features)" if hollow else ""),
                legendgroup=label, offsetgroup=label, boxpoints="all", jitter=0.3, pointpos=0,
                marker={"color": color, "size": 7, "symbol": "circle-open" if hollow else "circle",
                        "line": {"width": 1.5, "color": color}},
                line={"color": color}, fillcolor="rgba(0,0,0,0)" if hollow else None, opacity=styles[r]["opacity"],
            ))
    seeds = max(len(v) for v in values.values())
    subtitle = ONE_SEED_NOTE if seeds < 2 else f"up to {seeds} seeds per case; a point per seed"
    fig.update_layout(
        # the two-line title at the top, the legend's rows under it, just above the plot
        title={"text": f"{report_of(suite)}: {acc.label} over seeds<br><span style='font-size:12px;color:#555'>"
                       f"{html.escape(subtitle, quote=False)}</span>", "y": 0.97, "yref": "container",
               "yanchor": "top"},
        boxmode="group", height=FIGURE_HEIGHT, xaxis=_case_axis(order, suite), margin={"t": 120},
        yaxis_title=f"{acc.label} ({acc.unit})",
        legend={"orientation": "h", "x": 0.0, "y": 1.0, "yanchor": "bottom", "xanchor": "left"},
    )
    return fig


def training_curves(runs: Sequence[Run], suite: str) -> go.Figure | None:
    """Per case of ``suite`` and per run: training loss and validation accuracy by epoch."""
    acc = METRICS["accuracy_val"]
    per_run = [(label, {k: c for k, c in res.cases().items() if c.suite == suite}) for label, res in runs]
    order = _ordered({k for _, cases in per_run for k, c in cases.items() if c.train and c.train.curve}, per_run)
    if not order:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", f"validation accuracy ({acc.unit})"))
    for r, (label, cases) in enumerate(per_run):
        for i, name in enumerate(order):
            c = cases.get(name)
            if c is None or c.train is None or not c.train.curve:
                continue
            color = _PALETTE[i % len(_PALETTE)]
            shown_legend = True
            for col, key, scale in ((1, "loss_train", 1.0), (2, "accuracy_val", acc.scale)):
                pts = [
                    (float(e), float(v) * scale)
                    for p in c.train.curve
                    if _finite(e := p.get("epoch")) and _finite(v := p.get(key))
                ]
                if not pts:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=[e for e, _ in pts], y=[v for _, v in pts], mode="lines+markers",
                        name=short_name(name, suite) + (f" ({label})" if len(runs) > 1 else ""),
                        legendgroup=f"{name} ({label})", showlegend=shown_legend,
                        line={"color": color, "dash": _RUN_DASH[r % len(_RUN_DASH)]},
                        marker={"color": color, "symbol": _RUN_SYMBOL[r % len(_RUN_SYMBOL)]},
                    ),
                    row=1, col=col,
                )
                shown_legend = False
    if not fig.data:
        return None
    fig.update_layout(title=f"{report_of(suite)}: training curves", height=FIGURE_HEIGHT)
    fig.update_xaxes(title_text="epoch", dtick=1)  # epochs are whole
    return fig


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _ordered(names: set[str], per_run: Sequence[tuple[str, Mapping[str, CaseRecords]]]) -> list[str]:
    """``names`` in the order they first appear across the runs (file order: suite order)."""
    seen: list[str] = []
    for _, cases in per_run:
        seen += [n for n in cases if n in names and n not in seen]
    return seen


def suites_of(runs: Sequence[Run]) -> list[str]:
    """Suites present in the runs: the registry's report order first, then any others by name."""
    present = {b.record.suite for _, res in runs for b in res}
    known = [s for s in _suite_modules() if s in present]
    return known + sorted(present - set(known))


def report_of(suite: str) -> str:
    """The report a suite measures ("report 000"), or the suite name if the registry does not know it."""
    source = _suite_modules().get(suite)
    return f"report {source[:3]} ({suite})" if source else suite


def _suite_modules() -> Mapping[str, str]:
    # The suite → report mapping is static data in suites.registry; import it lazily so that charts
    # work (with plainer titles) while the suites package is broken or being rebuilt.
    try:
        from suites.registry import registry
    except ImportError:
        return {}
    return registry().reports


#: Plain modules in light colours, so that dark text on them reads; the modules the reports study in
#: a dark colour with a hatch, found at a glance, and named in bold.
_MODULE_COLORS = qualitative.Pastel1 + qualitative.Pastel2
#: Paul Tol's dark muted colours: none is a report's colour (:data:`REPORT_COLORS`), so that a hatched
#: segment is never read as belonging to a report.
_EMPHASIS_COLORS = ("#332288", "#882255", "#117733", "#AA4499")
_REST_COLOR = "#E5E5E5"
_BAR_PX = 34  # px per bar (one bar per run), so that a segment's label has room
_ROW_GAP_PX = 75  # px between the three panels: a panel title and an x-axis tick row
_LEGEND_ROW_PX = 20
_MODULE_MARGIN = {"l": 60, "r": 20, "t": 90, "b": 40}
_MODULE_ROWS = (
    ("forward", "forward time"),
    ("backward", "backward time"),
    ("macs", "MACs"),
)


def _module_record(results: Results, case: str) -> Record | None:
    c = results.cases().get(case)
    return c.step if c is not None and c.step is not None and c.step.modules else None


def _module_value(module: Mapping[str, object], row: str) -> float | None:
    key = "macs_forward" if row == "macs" else quantity(row).time
    value = module.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _record_total(record: Record, row: str) -> float | None:
    """The whole a bar's segments are parts of: the model's own entry of the breakdown (name ``""``),
    measured like its modules (MACs at the run's input, times in the breakdown's rounds); the record's
    figure only for breakdowns without that entry. The record's ``macs_forward`` is at the native input,
    so against modules counted at a smaller run input it would draw most of a bar as "not in any module"."""
    root = next((m for m in record.modules or () if m.get("name") == ""), None)
    value = _module_value(root, row) if root is not None else None
    if value is None:
        value = record.macs_forward if row == "macs" else record.median(row)
    return None if value is None else float(value)


def module_label(name: str, module_type: str) -> str:
    """A module's label on its segment and in the legend: bold for the kinds the reports study."""
    text = html.escape(name, quote=False)
    return f"<b>{text}</b>" if emphasised(module_type) else text


def module_breakdown(runs: Sequence[Run], case: str) -> go.Figure | None:
    """Stacked horizontal bars of one case: forward time, backward time and MACs, one panel each, one
    bar per run (base above head) made of its modules (the leaves of the tree cut at the depth every
    run measured) in model order, and the part of the phase no module accounts for. Each segment is
    labelled with its module's name where the name fits; the legend lists every module in model order;
    deformable, attention and dynamic-convolution modules are dark, hatched and bold. ``None`` when no
    run has a breakdown of ``case``."""
    records = [(label, r) for label, res in runs if (r := _module_record(res, case)) is not None]
    if not records:
        return None
    depth = min(r.modules_depth if r.modules_depth is not None
                else max(int(m.get("depth", 0)) for m in r.modules or ()) for _, r in records)
    per_run = [(label, r, {str(m["name"]): m for m in leaves(r.modules or (), depth)}) for label, r in records]
    names: list[str] = []
    types: dict[str, str] = {}
    for _, _, mods in per_run:
        for name, m in mods.items():
            if name not in types:
                names.append(name)
            types[name] = str(m.get("type", ""))
    labels = [label for label, _, _ in per_run]
    time_m, macs_m = METRICS["time_forward_s"], METRICS["macs_forward"]
    units = {"forward": time_m, "backward": time_m, "macs": macs_m}
    fig = make_subplots(
        rows=len(_MODULE_ROWS), cols=1, vertical_spacing=0.0,
        subplot_titles=[f"{title} ({units[row].unit})" for row, title in _MODULE_ROWS],
    )
    plain = emphatic = 0
    for name in names:
        if emphasised(types[name]):
            color, pattern = _EMPHASIS_COLORS[emphatic % len(_EMPHASIS_COLORS)], "/"
            emphatic += 1
        else:
            color, pattern = _MODULE_COLORS[plain % len(_MODULE_COLORS)], ""
            plain += 1
        label = module_label(name, types[name])
        font_color = "white" if pattern else "#222"
        for i, (row, _) in enumerate(_MODULE_ROWS):
            metric = units[row]
            xs = [None if (v := _module_value(mods.get(name, {}), row)) is None else v * metric.scale
                  for _, _, mods in per_run]
            fig.add_trace(go.Bar(
                x=xs, y=labels, orientation="h", name=label, legendgroup=name, showlegend=i == 0,
                text=[label] * len(labels), textposition="inside", insidetextanchor="middle", textangle=0,
                textfont={"color": font_color}, constraintext="both", cliponaxis=True,
                marker={"color": color, "line": {"color": "white", "width": 1},
                        "pattern": {"shape": pattern, "fgcolor": "rgba(255,255,255,0.45)", "size": 8}},
                hovertemplate=f"{html.escape(name)} ({html.escape(types[name])}): %{{x:.4g}} {metric.unit}<extra></extra>",
            ), row=i + 1, col=1)
    for i, (row, _) in enumerate(_MODULE_ROWS):
        metric = units[row]
        rest: list[float | None] = []
        for _, record, mods in per_run:
            total = _record_total(record, row)
            parts = [v for m in mods.values() if (v := _module_value(m, row)) is not None]
            # a negative rest (the breakdown's hooks made the modules slower than the timed phase) is
            # not drawn: a bar cannot be shorter than its segments
            rest.append(None if total is None or total <= sum(parts) else (total - sum(parts)) * metric.scale)
        if any(v for v in rest):
            fig.add_trace(go.Bar(
                x=rest, y=labels, orientation="h", name=REST, legendgroup=REST, showlegend=i == 0,
                text=[REST] * len(labels), textposition="inside", insidetextanchor="middle", textangle=0,
                textfont={"color": "#555"}, marker={"color": _REST_COLOR, "line": {"color": "white", "width": 1}},
                hovertemplate=f"{REST}: %{{x:.4g}} {metric.unit}<extra></extra>",
            ), row=i + 1, col=1)
    panel = _BAR_PX * len(labels) + 20
    legend_entries = len(names) + 1
    height = max(_MODULE_MARGIN["t"] + len(_MODULE_ROWS) * (panel + _ROW_GAP_PX) + _MODULE_MARGIN["b"],
                 _MODULE_MARGIN["t"] + legend_entries * _LEGEND_ROW_PX + _MODULE_MARGIN["b"])
    plot = height - _MODULE_MARGIN["t"] - _MODULE_MARGIN["b"]
    # each panel's share of the plot's height, a gap above the next panel's title
    gap = _ROW_GAP_PX / plot
    band = (1 - gap * (len(_MODULE_ROWS) - 1)) / len(_MODULE_ROWS)
    for i in range(len(_MODULE_ROWS)):
        top = 1 - i * (band + gap)
        fig.update_layout({f"yaxis{'' if i == 0 else i + 1}": {
            "domain": [max(0.0, top - band), min(1.0, top)], "autorange": "reversed", "automargin": True}})
        fig.layout.annotations[i].update(y=top, yanchor="bottom")
    fig.update_xaxes(rangemode="tozero", automargin=True)
    fig.update_layout(
        title={"text": f"{html.escape(case)}: time and MACs per module (depth {depth})", "x": 0.0, "xanchor": "left"},
        barmode="stack", height=height, margin=_MODULE_MARGIN, bargap=0.25,
        uniformtext={"minsize": 10, "mode": "hide"},  # a name that does not fit is left to the legend
        legend={"traceorder": "normal", "title": {"text": "modules, in model order"}, "tracegroupgap": 0},
    )
    return fig
