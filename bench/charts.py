"""Plotly figures built from records, and the one self-contained HTML page that holds them.

Charts (each takes one or more labelled runs, so ``bench report`` draws one run and ``bench compare``
draws base and head side by side):

* :func:`accuracy_vs_cost` — test accuracy against a chosen cost (MACs, params, step time, memory; a
  dropdown switches between them), with each run's Pareto front marked;
* :func:`time_boxplots` — per case, a boxplot of time (seconds per training epoch, or per training
  step) with test accuracy as a line on a second axis, one figure per report — the figures of report 000;
* :func:`training_curves` — per-epoch training loss and validation accuracy.

Units and scales come from :data:`bench.metrics.METRICS`. :func:`page` embeds plotly.js exactly once
(the first figure is written with ``include_plotlyjs=True``, the rest with ``False``), so the page works
offline.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeGuard

import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from bench.metrics import METRICS, Metric
from bench.record import Record
from bench.results import Results

#: A block of a page: a figure, or a trusted HTML fragment (callers escape their text).
Block: TypeAlias = "go.Figure | str"
#: A run to draw, with the label its traces carry ("base", "head", or the file name).
Run: TypeAlias = tuple[str, Results]

FIGURE_HEIGHT = 480
_PALETTE = qualitative.Dark24
_RUN_DASH = ("solid", "dash", "dot", "dashdot")
_RUN_SYMBOL = ("circle", "diamond", "square", "triangle-up")


@dataclass(frozen=True)
class CaseRecords:
    """A case's successful records in one run: timing/memory (step) and accuracy (train)."""

    case: str
    suite: str
    step: Record | None = None
    train: Record | None = None

    def value(self, key: str) -> float | None:
        """``key`` from the step record, else the train record (static costs live in both)."""
        for record in (self.step, self.train):
            if record is not None and getattr(record, key, None) is not None:
                return float(getattr(record, key))
        return None


def cases_of(results: Results) -> dict[str, CaseRecords]:
    """Successful records of a run grouped by case, in file order."""
    cases: dict[str, CaseRecords] = {}
    for bench in results:
        record = bench.record
        if record.status != "ok":
            continue
        current = cases.get(record.case, CaseRecords(record.case, record.suite))
        if record.kind == "step" and current.step is None:
            current = CaseRecords(current.case, current.suite, record, current.train)
        elif record.kind == "train" and current.train is None:
            current = CaseRecords(current.case, current.suite, current.step, record)
        cases[record.case] = current
    return cases


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


def accuracy_vs_cost(runs: Sequence[Run], cost: str = "macs", accuracy: str = "accuracy_test") -> go.Figure | None:
    """Accuracy against cost for every case with both; ``None`` when no case has both."""
    if cost not in COSTS:
        raise KeyError(f"unknown cost {cost!r}; choose from {sorted(COSTS)}")
    acc = METRICS[accuracy]
    traces: dict[str, list[go.Scatter]] = {}
    for name, axis in COSTS.items():
        for r, (label, results) in enumerate(runs):
            rows = [
                (x, y, c.case)
                for c in cases_of(results).values()
                if (x := axis.value(c)) is not None and (y := c.value(accuracy)) is not None
            ]
            if not rows:
                continue
            xs = [x * axis.scale for x, _, _ in rows]
            ys = [y * acc.scale for _, y, _ in rows]
            names = [n for _, _, n in rows]
            front = pareto_front(list(zip(xs, ys)))
            color = _PALETTE[r % len(_PALETTE)]
            traces.setdefault(name, []).extend([
                go.Scatter(
                    x=xs, y=ys, text=names, mode="markers", name=f"{label}", legendgroup=label,
                    marker={"color": color, "size": 9, "symbol": _RUN_SYMBOL[r % len(_RUN_SYMBOL)], "opacity": 0.75},
                    hovertemplate="%{text}<br>%{x:.4g} " + axis.unit + "<br>%{y:.2f} " + acc.unit + "<extra>" + label + "</extra>",
                ),
                go.Scatter(
                    x=[xs[i] for i in front], y=[ys[i] for i in front], text=[names[i] for i in front],
                    mode="lines+markers", name=f"{label} Pareto front", legendgroup=label,
                    line={"color": color, "dash": _RUN_DASH[r % len(_RUN_DASH)], "shape": "hv"},
                    marker={"color": color, "size": 13, "symbol": "star"},
                    hovertemplate="%{text} (Pareto front)<extra>" + label + "</extra>",
                ),
            ])
    if not traces:
        return None
    shown = cost if cost in traces else next(iter(traces))
    fig = go.Figure()
    buttons = []
    for name, group in traces.items():
        for trace in group:
            trace.visible = name == shown
            fig.add_trace(trace)
    for name in traces:
        axis = COSTS[name]
        visible = [n == name for n, group in traces.items() for _ in group]
        buttons.append({
            "label": axis.label, "method": "update",
            "args": [{"visible": visible}, {"xaxis.title.text": f"{axis.label} ({axis.unit})"}],
        })
    axis = COSTS[shown]
    fig.update_layout(
        title=f"{acc.label} against cost (Pareto front marked)",
        xaxis_title=f"{axis.label} ({axis.unit})",
        yaxis_title=f"{acc.label} ({acc.unit})",
        height=FIGURE_HEIGHT,
        updatemenus=[{"buttons": buttons, "active": list(traces).index(shown), "x": 1.0, "xanchor": "right", "y": 1.15}],
    )
    return fig


@dataclass(frozen=True)
class _Phase:
    """A time series a boxplot can show: its title, a short label, the metric giving unit and scale,
    and how to read the samples from a case."""

    title: str
    label: str
    metric: Metric
    samples: Callable[[CaseRecords], list[float] | None]


_PHASES: Mapping[str, _Phase] = {
    "epoch": _Phase("time per training epoch", "epoch time", METRICS["time_epoch_s"],
                    lambda c: c.train.samples_epoch_s if c.train else None),
    "step": _Phase("time per training step (forward + backward + optimizer)", "step time", _TIME,
                   lambda c: _step_samples(c)),
}


def _step_samples(c: CaseRecords) -> list[float] | None:
    """Per-round step time: the phases are timed in the same rounds, so their samples add up."""
    if c.step is None:
        return None
    phases = [getattr(c.step, f"samples_{p}_s") for p in ("forward", "backward", "optimizer")]
    if not all(phases) or len({len(p) for p in phases}) != 1:
        return None
    return [sum(values) for values in zip(*phases)]


def time_boxplots(
    runs: Sequence[Run], suite: str, phase: str = "epoch", accuracy: str = "accuracy_test"
) -> go.Figure | None:
    """Per case of ``suite``: a boxplot of ``phase`` time per run, and accuracy as a line on a
    second axis. ``None`` when no case of the suite has samples."""
    spec = _PHASES[phase]
    title, metric, samples_of = spec.title, spec.metric, spec.samples
    acc = METRICS[accuracy]
    per_run = [(label, {k: c for k, c in cases_of(res).items() if c.suite == suite}) for label, res in runs]
    order = _ordered({k for _, cases in per_run for k, c in cases.items() if samples_of(c)}, per_run)
    if not order:
        return None
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for r, (label, cases) in enumerate(per_run):
        xs: list[str] = []
        ys: list[float] = []
        for name in order:
            samples = samples_of(cases[name]) if name in cases else None
            if samples:
                xs += [name] * len(samples)
                ys += [s * metric.scale for s in samples]
        color = _PALETTE[r % len(_PALETTE)]
        if ys:
            fig.add_trace(
                go.Box(
                    x=xs, y=ys, name=f"{label} {spec.label}", legendgroup=label, offsetgroup=label,
                    boxpoints="all", jitter=0.4, pointpos=0, marker={"color": color, "size": 4}, line={"color": color},
                ),
                secondary_y=False,
            )
        points = [(n, cases[n].value(accuracy)) for n in order if n in cases]
        points = [(n, v * acc.scale) for n, v in points if v is not None]
        if points:
            fig.add_trace(
                go.Scatter(
                    x=[n for n, _ in points], y=[v for _, v in points], mode="lines+markers",
                    name=f"{label} {acc.label}", legendgroup=label,
                    line={"color": color, "dash": _RUN_DASH[r % len(_RUN_DASH)]},
                    marker={"color": color, "size": 9, "symbol": _RUN_SYMBOL[r % len(_RUN_SYMBOL)]},
                ),
                secondary_y=True,
            )
    fig.update_layout(
        title=f"{report_of(suite)}: {title}, with {acc.label}",
        boxmode="group", height=FIGURE_HEIGHT, xaxis={"type": "category", "categoryorder": "array", "categoryarray": order},
    )
    fig.update_yaxes(title_text=f"{spec.label} ({metric.unit})", secondary_y=False)
    fig.update_yaxes(title_text=f"{acc.label} ({acc.unit})", secondary_y=True, tickformat=".1f", showgrid=False)
    return fig


def training_curves(runs: Sequence[Run], suite: str) -> go.Figure | None:
    """Per case of ``suite`` and per run: training loss and validation accuracy by epoch."""
    acc = METRICS["accuracy_val"]
    per_run = [(label, {k: c for k, c in cases_of(res).items() if c.suite == suite}) for label, res in runs]
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
                        name=f"{name} ({label})", legendgroup=f"{name} ({label})", showlegend=shown_legend,
                        line={"color": color, "dash": _RUN_DASH[r % len(_RUN_DASH)]},
                        marker={"color": color, "symbol": _RUN_SYMBOL[r % len(_RUN_SYMBOL)]},
                    ),
                    row=1, col=col,
                )
                shown_legend = False
    if not fig.data:
        return None
    fig.update_layout(title=f"{report_of(suite)}: training curves", height=FIGURE_HEIGHT)
    fig.update_xaxes(title_text="epoch")
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


#: Beyond this many cases per run a page of per-case charts is neither drawable nor readable (ten
#: thousand boxplots take a minute and gigabytes to build); the tables still list every case.
MAX_CHART_CASES = 500


def run_charts(runs: Sequence[Run], cost: str = "macs") -> list[Block]:
    """Every chart for ``runs``, with headings, and a note wherever a chart has nothing to draw."""
    largest = max((len({b.record.case for b in results}) for _, results in runs), default=0)
    if largest > MAX_CHART_CASES:
        return ["<h2>Charts</h2>", _omitted(
            f"{largest} cases in one run, more than the {MAX_CHART_CASES} a page of charts can hold; "
            "bench report of a subset draws them"
        )]
    blocks: list[Block] = ["<h2>Accuracy against cost</h2>"]
    fig = accuracy_vs_cost(runs, cost)
    blocks.append(fig if fig is not None else _omitted("no case has both an accuracy and a cost"))
    for suite in suites_of(runs):
        blocks.append(f"<h2>{html.escape(report_of(suite))}</h2>")
        for phase in _PHASES:
            fig = time_boxplots(runs, suite, phase)
            blocks.append(fig if fig is not None else _omitted(f"no {_PHASES[phase].title} samples"))
        fig = training_curves(runs, suite)
        blocks.append(fig if fig is not None else _omitted("no training curves"))
    return blocks


def _omitted(why: str) -> str:
    return f"<p class='omitted'>Chart omitted: {html.escape(why)}.</p>"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
td.right, th.right { text-align: right; font-variant-numeric: tabular-nums; }
.st-bold-red { color: #b00; font-weight: bold; } .st-green { color: #070; } .st-yellow { color: #a60; }
.st-magenta { color: #909; } .st-cyan { color: #077; } .st-dim { color: #888; }
.warning { background: #fee; border-left: 4px solid #c00; padding: 0.5em; font-weight: bold; }
.headline.exit-0 { color: #070; font-weight: bold; } .headline { color: #b00; font-weight: bold; }
.omitted { color: #888; font-style: italic; }
.chart { margin: 1em 0; }
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
