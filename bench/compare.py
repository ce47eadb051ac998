"""``bench compare BASE HEAD``: what got slower, bigger or less accurate between two runs.

Three layers, kept apart so that the verdicts can be tested without rendering anything:

1. verdicts (pure): :func:`evaluate_metric` applies one :class:`~bench.metrics.Metric`'s rule to a
   base/head pair; :func:`compare_benchmark` combines them into one :class:`Status` per benchmark;
   :func:`compare_runs` does this for every benchmark of two :class:`~bench.results.Results`.
2. rendering: a rich terminal table, Markdown (CI job summary, PR comment), JSON, and a self-contained
   HTML page (tables + the charts of :mod:`bench.charts` for both runs).
3. the CLI edge: argparse → :class:`CompareOptions` → exit code.

Exit codes: 0 no regression; 1 a regression or a newly failing case; 2 unusable input (see
:mod:`bench.results`); 3 runs not comparable (different device or profile) unless
``--allow-incomparable``. A crash of the tool exits 70 (:mod:`bench.cli`), never 1.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import statistics
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from bench.metrics import METRICS, Exact, Metric, TimeRule, Tolerance
from bench.results import Benchmark, Environment, Results, ResultsError, load_results

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_UNUSABLE = 2
EXIT_INCOMPARABLE = 3

# ----------------------------------------------------------------------------------------------
# 1. verdicts
# ----------------------------------------------------------------------------------------------


class Status(str, Enum):
    """One per benchmark present in either run."""

    UNCHANGED = "unchanged"
    REGRESSED = "regressed"
    IMPROVED = "improved"
    INCONCLUSIVE = "inconclusive"
    NEW = "new"
    MISSING = "missing"
    FAILED = "failed"
    FIXED = "fixed"
    NOT_COMPARABLE = "not comparable"


#: Per metric: ``added``/``removed`` when only one side has a value.
Verdict = Literal["unchanged", "improved", "regressed", "inconclusive", "added", "removed"]


@dataclass(frozen=True)
class MetricDelta:
    """One metric of one benchmark: both values (SI units), the change and the rule's verdict."""

    metric: Metric  # with the thresholds actually applied
    base: float | None
    head: float | None
    verdict: Verdict
    #: (head - base) / base; ``None`` when base is 0 or a side is missing (see :attr:`new_nonzero`).
    rel: float | None = None
    p_value: float | None = None
    note: str = ""

    @property
    def key(self) -> str:
        return self.metric.key

    @property
    def delta(self) -> float | None:
        if self.base is None or self.head is None:
            return None
        return self.head - self.base

    @property
    def new_nonzero(self) -> bool:
        """A zero baseline that became nonzero: no relative change exists, the absolute rule decides."""
        return self.base == 0 and self.head is not None and self.head != 0


@dataclass(frozen=True)
class BenchmarkComparison:
    name: str
    status: Status
    base: Benchmark | None
    head: Benchmark | None
    metrics: tuple[MetricDelta, ...] = ()
    notes: tuple[str, ...] = ()
    #: ``failed`` because the case went from ok (or absent) to not ok; "still failing" does not gate.
    newly_failing: bool = False

    @property
    def gates(self) -> bool:
        """Whether this benchmark alone makes ``bench compare`` exit 1."""
        return self.status is Status.REGRESSED or (self.status is Status.FAILED and self.newly_failing)

    @property
    def changed_metrics(self) -> tuple[MetricDelta, ...]:
        return tuple(m for m in self.metrics if m.verdict != "unchanged")

    @property
    def case(self) -> str:
        side = self.head or self.base
        assert side is not None
        return side.record.case


@dataclass(frozen=True)
class CompareOptions:
    """Everything ``bench compare`` can be told, typed (built from argparse at the CLI edge)."""

    #: Metric key → main threshold (relative for times and memory, a fraction for accuracy).
    thresholds: Mapping[str, float] = field(default_factory=dict)
    allow_incomparable: bool = False
    show_all: bool = False
    markdown: Path | None = None
    html: Path | None = None
    json: Path | None = None
    cost: str = "macs"
    #: Overrides :attr:`TimeRule.noise_z` for every time metric (0 ignores the noise between runs).
    noise_z: float | None = None


@dataclass(frozen=True)
class Comparison:
    base: Results
    head: Results
    benchmarks: tuple[BenchmarkComparison, ...]
    #: Differences that make the runs not comparable (device, profile): "field: base X, head Y".
    incomparable: tuple[str, ...] = ()
    allow_incomparable: bool = False
    #: Other environment differences worth knowing (torch version, GPU, threads...).
    env_notes: tuple[str, ...] = ()
    #: Accuracy compared exactly (same environment, deterministic, same seed per record).
    exact_accuracy: bool = False
    thresholds: Mapping[str, float] = field(default_factory=dict)
    #: Spread of the time medians between the runs; ``None`` when too few to estimate.
    noise: TimeNoise | None = None
    #: Per time metric, the relative move the noise explains (:func:`noise_floor`), as applied.
    floors: Mapping[str, float] = field(default_factory=dict)

    @property
    def blocked(self) -> bool:
        """Runs not comparable and not overridden: no verdicts were computed."""
        return bool(self.incomparable) and not self.allow_incomparable

    @property
    def exit_code(self) -> int:
        if self.blocked:
            return EXIT_INCOMPARABLE
        if any(b.gates for b in self.benchmarks):
            return EXIT_REGRESSION
        return EXIT_OK

    def counts(self) -> dict[Status, int]:
        result = {s: 0 for s in Status}
        for b in self.benchmarks:
            result[b.status] += 1
        return result

    def by_status(self, *statuses: Status) -> list[BenchmarkComparison]:
        return [b for b in self.benchmarks if b.status in statuses]


def parse_threshold(text: str) -> tuple[str, float]:
    """``METRIC=VALUE`` → (key, value), validated against :data:`METRICS` and the metric's rule."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--threshold {text!r}: expected METRIC=VALUE, e.g. time_forward_s=0.15")
    if key not in METRICS:
        raise ValueError(f"--threshold {text!r}: unknown metric {key!r}; known: {', '.join(METRICS)}")
    try:
        value = float(value_text)
    except ValueError:
        raise ValueError(f"--threshold {text!r}: {value_text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"--threshold {text!r}: the threshold must be a finite number >= 0")
    METRICS[key].with_threshold(value)  # raises for exact metrics, which take no threshold
    return key, value


def effective_metric(metric: Metric, thresholds: Mapping[str, float], exact: bool) -> Metric:
    """The metric with the command line's threshold applied; a reproducible metric is checked
    exactly when ``exact`` holds, unless the user set its threshold explicitly."""
    if metric.key in thresholds:
        return metric.with_threshold(thresholds[metric.key])
    if exact and metric.reproducible and isinstance(metric.rule, Tolerance):
        return replace(metric, rule=replace(metric.rule, rel=0.0, abs=0.0))
    return metric


def evaluate_metric(
    metric: Metric,
    base: float | None,
    head: float | None,
    base_samples: Sequence[float] | None = None,
    head_samples: Sequence[float] | None = None,
    noise_floor: float = 0.0,
) -> MetricDelta:
    """Apply ``metric.rule`` to one base/head pair (values in SI units, as stored). ``noise_floor`` is
    the relative move the noise between the two runs explains (times only; see :func:`time_noise`)."""
    if base is None and head is None:
        raise ValueError(f"{metric.key}: nothing to compare")
    if base is None:
        return MetricDelta(metric, base, head, "added", note="no value in base")
    if head is None:
        return MetricDelta(metric, base, head, "removed", note="no value in head")
    delta = head - base
    rel = delta / base if base != 0 else None
    if delta == 0:
        return MetricDelta(metric, base, head, "unchanged", rel=0.0)
    worse = delta > 0 if metric.direction == "lower" else delta < 0
    direction: Verdict = "regressed" if worse else "improved"
    rule = metric.rule
    if isinstance(rule, Exact):
        return MetricDelta(metric, base, head, direction, rel=rel, note="exact metric changed")
    if isinstance(rule, Tolerance):
        # A zero baseline has no relative change ("new nonzero"): the absolute tolerance decides.
        beyond = abs(delta) > rule.abs and (rel is None or abs(rel) > rule.rel)
        if not beyond:
            return MetricDelta(metric, base, head, "unchanged", rel=rel, note="within tolerance")
        return MetricDelta(metric, base, head, direction, rel=rel)
    if isinstance(rule, TimeRule):
        moved = abs(delta) > rule.abs_floor and (rel is None or abs(rel) > rule.rel)
        if not moved:
            return MetricDelta(metric, base, head, "unchanged", rel=rel, note="within threshold")
        if rel is not None and abs(rel) <= noise_floor:
            return MetricDelta(
                metric, base, head, "inconclusive", rel=rel,
                note=f"within the noise between these runs (±{noise_floor:.0%})",
            )
        if not base_samples or not head_samples or len(base_samples) < 2 or len(head_samples) < 2:
            return MetricDelta(
                metric, base, head, "inconclusive", rel=rel, note="moved past the threshold; no raw samples to test"
            )
        p = _mann_whitney(base_samples, head_samples, greater=delta > 0)
        if p < rule.alpha:
            return MetricDelta(metric, base, head, direction, rel=rel, p_value=p)
        return MetricDelta(
            metric, base, head, "inconclusive", rel=rel, p_value=p,
            note=f"moved past the threshold but not significant (p={p:.3g} >= {rule.alpha:g})",
        )
    raise TypeError(f"{metric.key}: unknown rule {rule!r}")


def _mann_whitney(base: Sequence[float], head: Sequence[float], *, greater: bool) -> float:
    """One-sided Mann-Whitney U p-value that head's samples are greater (or less) than base's.

    One-sided in the direction the median already moved: the question asked is "is head really
    slower?", and with the few rounds of a smoke run a two-sided test could never reach alpha."""
    from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]

    with warnings.catch_warnings():
        # Constant samples on both sides make the normal approximation degenerate; scipy warns and
        # returns a p-value we can still use (nan is treated as "not significant" below).
        warnings.simplefilter("ignore", RuntimeWarning)
        result = mannwhitneyu(list(head), list(base), alternative="greater" if greater else "less")
    p = float(result.pvalue)
    return p if math.isfinite(p) else 1.0


#: Fewer time medians than this give no usable spread: a metric with fewer uses the spread pooled over
#: all time metrics, and with fewer pooled the relative threshold alone decides.
MIN_NOISE_MEDIANS = 12


@dataclass(frozen=True)
class TimeNoise:
    """How much the time medians of two runs disagree: per time metric, the robust spread σ
    (1.4826 × median absolute deviation) of log(head/base) over every benchmark measured in both,
    and the median ratio over all of them. A few real regressions barely move either (the median
    tolerates up to half). Per metric, because phases differ: a memory-bound optimizer step drifts
    more than a compute-bound forward pass on a shared machine."""

    sigma: Mapping[str, float]
    medians: Mapping[str, int]
    center: float

    @property
    def ratio(self) -> float:
        """The median head/base time ratio: how much faster or slower head ran overall."""
        return math.exp(self.center)

    @property
    def n(self) -> int:
        return sum(self.medians.values())


def _robust_spread(values: Sequence[float]) -> tuple[float, float]:
    center = statistics.median(values)
    return center, 1.4826 * statistics.median(abs(x - center) for x in values)


def time_noise(base: Results, head: Results) -> TimeNoise | None:
    """The noise between two runs' times, or ``None`` when fewer than :data:`MIN_NOISE_MEDIANS`
    medians are comparable in all."""
    logs: dict[str, list[float]] = {}
    for name, b in base.benchmarks.items():
        h = head.benchmarks.get(name)
        if h is None or not (b.ok and h.ok):
            continue
        for metric in METRICS.values():
            if isinstance(metric.rule, TimeRule):
                bv, hv = getattr(b.record, metric.key, None), getattr(h.record, metric.key, None)
                if bv and hv and bv > 0 and hv > 0:
                    logs.setdefault(metric.key, []).append(math.log(hv / bv))
    pooled = [x for values in logs.values() for x in values]
    if len(pooled) < MIN_NOISE_MEDIANS:
        return None
    center, pooled_sigma = _robust_spread(pooled)
    sigma = {
        key: _robust_spread(values)[1] if len(values) >= MIN_NOISE_MEDIANS else pooled_sigma
        for key, values in logs.items()
    }
    return TimeNoise(sigma=sigma, medians={k: len(v) for k, v in logs.items()}, center=center)


#: Record fields that must agree for two records to be compared at all.
_IDENTITY_FIELDS = ("kind", "case")
#: Fields that define what was measured; a difference makes the pair not comparable unless the user
#: passed --allow-incomparable (then it becomes a note).
_SHAPE_FIELDS = (
    "device", "profile", "batch_size", "input_size", "in_channels", "num_classes", "dataset", "train_steps", "epochs",
)


def compare_benchmark(
    name: str,
    base: Benchmark | None,
    head: Benchmark | None,
    *,
    thresholds: Mapping[str, float] = {},
    exact_env: bool = False,
    allow_incomparable: bool = False,
    floors: Mapping[str, float] = {},
) -> BenchmarkComparison:
    """The status of one benchmark from its two sides (either may be absent). ``floors`` widens the
    time rules by the noise between the runs (metric key → relative move, see :func:`noise_floor`)."""
    if base is None and head is None:
        raise ValueError(f"{name}: absent from both runs")
    if base is None:
        assert head is not None
        if head.ok:
            return BenchmarkComparison(name, Status.NEW, None, head, notes=("new in head",))
        return BenchmarkComparison(
            name, Status.FAILED, None, head, notes=(f"new in head, and failing: {_failure(head)}",), newly_failing=True
        )
    if head is None:
        return BenchmarkComparison(name, Status.MISSING, base, None, notes=("missing from head",))
    if base.ok and not head.ok:
        return BenchmarkComparison(
            name, Status.FAILED, base, head, notes=(f"newly failing: {_failure(head)}",), newly_failing=True
        )
    if not base.ok and head.ok:
        return BenchmarkComparison(name, Status.FIXED, base, head, notes=(f"fixed (base was {_failure(base)})",))
    if not base.ok and not head.ok:
        return BenchmarkComparison(
            name, Status.FAILED, base, head,
            notes=(f"still failing (base: {base.record.status}, head: {_failure(head)})",),
        )

    b, h = base.record, head.record
    identity = [f"{f}: {getattr(b, f)!r} vs {getattr(h, f)!r}" for f in _IDENTITY_FIELDS if getattr(b, f) != getattr(h, f)]
    shape = [f"{f}: {getattr(b, f)!r} vs {getattr(h, f)!r}" for f in _SHAPE_FIELDS if getattr(b, f) != getattr(h, f)]
    if identity or (shape and not allow_incomparable):
        return BenchmarkComparison(name, Status.NOT_COMPARABLE, base, head, notes=tuple(identity + shape))
    notes = [f"compared although {s} (--allow-incomparable)" for s in shape]

    exact = exact_env and b.seed is not None and b.seed == h.seed
    deltas: list[MetricDelta] = []
    for metric in METRICS.values():
        bv, hv = getattr(b, metric.key, None), getattr(h, metric.key, None)
        if bv is None and hv is None:
            continue
        applied = effective_metric(metric, thresholds, exact)
        bs = getattr(b, metric.samples_key) if metric.samples_key else None
        hs = getattr(h, metric.samples_key) if metric.samples_key else None
        deltas.append(evaluate_metric(applied, bv, hv, bs, hs, floors.get(metric.key, 0.0)))
    return BenchmarkComparison(name, _combine(deltas), base, head, tuple(deltas), tuple(notes))


def noise_floor(
    metric: Metric, noise: TimeNoise | None, thresholds: Mapping[str, float] = {}, noise_z: float | None = None
) -> float:
    """The relative move of ``metric`` that the noise between the runs explains; 0 for non-time
    metrics, without a noise estimate, or when the user set the metric's threshold explicitly."""
    rule = metric.rule
    if noise is None or not isinstance(rule, TimeRule) or metric.key in thresholds:
        return 0.0
    if noise_z is not None:
        rule = replace(rule, noise_z=noise_z)
    sigma = noise.sigma.get(metric.key)
    return 0.0 if sigma is None else rule.noise_floor(sigma)


def _combine(deltas: Sequence[MetricDelta]) -> Status:
    """Regressed if any metric regressed. An inconclusive move (or a metric that disappeared) ranks
    above an improvement, so that a possible slowdown is never hidden behind a speedup elsewhere."""
    verdicts = {d.verdict for d in deltas}
    if "regressed" in verdicts:
        return Status.REGRESSED
    if verdicts & {"inconclusive", "removed"}:
        return Status.INCONCLUSIVE
    if "improved" in verdicts:
        return Status.IMPROVED
    return Status.UNCHANGED


def _failure(bench: Benchmark) -> str:
    error = (bench.record.error or "").strip().splitlines()
    return f"{bench.record.status}: {error[0]}" if error else bench.record.status


#: Environment fields that must match for accuracy to be reproducible bit for bit.
_EXACT_ENV_FIELDS = ("torch", "device_name", "threads", "deterministic")
#: Environment fields whose difference is reported (but does not block).
_NOTED_ENV_FIELDS = (
    "device_name", "torch", "torchvision", "cuda", "cudnn", "threads", "deterministic", "suite_version",
)


def environment_differences(base: Results, head: Results) -> tuple[list[str], list[str]]:
    """(blocking, noted) differences between two runs' environments, each naming both files."""
    blocking: list[str] = []
    for label, b_vals, h_vals in (
        ("device", base.devices, head.devices),
        ("profile", base.profiles, head.profiles),
    ):
        if b_vals != h_vals:
            blocking.append(f"{label}: {base.path} has {_set_text(b_vals)}, {head.path} has {_set_text(h_vals)}")
    noted = [
        f"{name}: {base.path} has {getattr(base.env, name)!r}, {head.path} has {getattr(head.env, name)!r}"
        for name in _NOTED_ENV_FIELDS
        if getattr(base.env, name) != getattr(head.env, name)
    ]
    b_gpu, h_gpu = base.env.gpu or {}, head.env.gpu or {}
    if b_gpu.get("driver") != h_gpu.get("driver"):
        noted.append(f"GPU driver: {base.path} has {b_gpu.get('driver')!r}, {head.path} has {h_gpu.get('driver')!r}")
    return blocking, noted


def _set_text(values: frozenset[str]) -> str:
    return " + ".join(sorted(values))


def reproducible_env(base: Environment, head: Environment) -> bool:
    """Same torch, device, threads and deterministic algorithms on: fixed-seed training then gives the
    same accuracy bit for bit. ``deterministic`` must be on (not merely equal): cuDNN autotuning
    makes GPU training vary between runs otherwise."""
    return base.deterministic is True and all(getattr(base, f) == getattr(head, f) for f in _EXACT_ENV_FIELDS)


def compare_runs(base: Results, head: Results, options: CompareOptions = CompareOptions()) -> Comparison:
    """Compare every benchmark of two runs (pure: no printing, no files)."""
    blocking, noted = environment_differences(base, head)
    exact_env = reproducible_env(base.env, head.env)
    blocked = Comparison(
        base, head, benchmarks=(), incomparable=tuple(blocking), allow_incomparable=options.allow_incomparable,
        env_notes=tuple(noted), exact_accuracy=exact_env, thresholds=dict(options.thresholds),
    )
    if blocked.blocked:
        return blocked  # no verdicts across devices or profiles unless asked for
    noise = time_noise(base, head)
    floors = {
        m.key: noise_floor(m, noise, options.thresholds, options.noise_z)
        for m in METRICS.values() if isinstance(m.rule, TimeRule)
    }
    names = list(base.benchmarks) + [n for n in head.benchmarks if n not in base.benchmarks]
    results = tuple(
        compare_benchmark(
            name, base.benchmarks.get(name), head.benchmarks.get(name),
            thresholds=options.thresholds, exact_env=exact_env, allow_incomparable=options.allow_incomparable,
            floors=floors,
        )
        for name in names
    )
    return replace(blocked, benchmarks=results, noise=noise, floors=floors)


# ----------------------------------------------------------------------------------------------
# 2. rendering
# ----------------------------------------------------------------------------------------------

Row = TypeVar("Row")
Justify = Literal["left", "right", "center"]


@dataclass(frozen=True)
class Column(Generic[Row]):
    """One column of a table, declared once and rendered to rich, Markdown and HTML alike."""

    header: str
    cell: Callable[[Row], str]
    justify: Justify = "left"
    style: Callable[[Row], str] | None = None  # rich style of the cell
    #: Keep the cell on one line in the terminal (benchmark names: folding them makes them unreadable).
    no_wrap: bool = False


@dataclass(frozen=True)
class TableSpec(Generic[Row]):
    title: str
    columns: Sequence[Column[Row]]
    rows: Sequence[Row]

    def to_rich(self) -> Table:
        table = Table(title=Text(self.title, style="bold"), title_justify="left", header_style="bold")
        for col in self.columns:
            table.add_column(col.header, justify=col.justify, overflow="fold", no_wrap=col.no_wrap)
        for row in self.rows:
            # Text, never markup: benchmark names like "test_step[resnet50_dcn_0000]" contain brackets.
            table.add_row(*(Text(c.cell(row), style=c.style(row) if c.style else "") for c in self.columns))
        return table

    def to_markdown(self) -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", " ")

        align = {"left": ":---", "right": "---:", "center": ":---:"}
        lines = [
            "| " + " | ".join(esc(c.header) for c in self.columns) + " |",
            "| " + " | ".join(align[c.justify] for c in self.columns) + " |",
        ]
        lines += ["| " + " | ".join(esc(c.cell(r)) for c in self.columns) + " |" for r in self.rows]
        return "\n".join(lines)

    def to_html(self) -> str:
        head = "".join(f'<th class="{c.justify}">{html.escape(c.header)}</th>' for c in self.columns)
        body = "".join(
            "<tr>" + "".join(
                f'<td class="{c.justify} {_css(c.style(r)) if c.style else ""}">{html.escape(c.cell(r))}</td>'
                for c in self.columns
            ) + "</tr>"
            for r in self.rows
        )
        return f"<table><caption>{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _css(style: str) -> str:
    return "st-" + style.replace(" ", "-") if style else ""


_STATUS_STYLE: Mapping[Status, str] = {
    Status.REGRESSED: "bold red",
    Status.FAILED: "bold red",
    Status.INCONCLUSIVE: "yellow",
    Status.NOT_COMPARABLE: "magenta",
    Status.MISSING: "yellow",
    Status.IMPROVED: "green",
    Status.FIXED: "green",
    Status.NEW: "cyan",
    Status.UNCHANGED: "dim",
}
_VERDICT_STYLE: Mapping[str, str] = {
    "regressed": "bold red", "improved": "green", "inconclusive": "yellow",
    "removed": "yellow", "added": "cyan", "unchanged": "dim",
}
#: Order in which benchmarks are listed: what needs attention first.
_STATUS_ORDER = (
    Status.FAILED, Status.REGRESSED, Status.NOT_COMPARABLE, Status.INCONCLUSIVE, Status.MISSING,
    Status.NEW, Status.FIXED, Status.IMPROVED, Status.UNCHANGED,
)


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
    return _sig(shown)


def _sig(x: float, digits: int = 4) -> str:
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= digits - 1:
        return f"{x:,.0f}"
    return f"{x:.{max(0, digits - 1 - magnitude)}f}"


def format_change(d: MetricDelta) -> str:
    """Relative change, or the absolute one where no relative change exists."""
    if d.verdict in ("added", "removed"):
        return d.verdict
    if d.new_nonzero:
        return "new nonzero"
    if d.rel is None:
        return "—"
    if d.rel == 0:
        return "0"
    if isinstance(d.metric.rule, Exact) and d.delta is not None:
        return f"{d.delta:+,.0f} ({d.rel:+.3%})"
    return f"{d.rel:+.1%}"


def format_delta(d: MetricDelta) -> str:
    if d.delta is None:
        return "—"
    text = format_value(d.metric, abs(d.delta))
    return ("+" if d.delta > 0 else "-" if d.delta < 0 else "") + text


def _summary_note(b: BenchmarkComparison) -> str:
    parts = list(b.notes)
    for d in b.changed_metrics:
        p = f", p={d.p_value:.2g}" if d.p_value is not None else ""
        parts.append(f"{d.metric.key} {d.verdict} {format_change(d)}{p}")
    return "; ".join(parts)


def summary_table(c: Comparison, *, show_all: bool = False) -> TableSpec[BenchmarkComparison]:
    rows = sorted(
        (b for b in c.benchmarks if show_all or b.status is not Status.UNCHANGED),
        key=lambda b: _STATUS_ORDER.index(b.status),
    )
    columns: list[Column[BenchmarkComparison]] = [
        Column("benchmark", lambda b: b.name, no_wrap=True),
        Column("status", lambda b: b.status.value, style=lambda b: _STATUS_STYLE[b.status]),
        Column("what changed", _summary_note),
    ]
    hidden = len(c.benchmarks) - len(rows)
    title = "Benchmarks" + (f" ({hidden} unchanged not shown)" if hidden else "")
    return TableSpec(title, columns, rows)


@dataclass(frozen=True)
class _ChangeRow:
    bench: BenchmarkComparison
    delta: MetricDelta


def change_tables(c: Comparison, *, show_all: bool = False) -> list[TableSpec[_ChangeRow]]:
    """One table per metric (units belong in headers, and a metric has one unit), listing every
    benchmark whose verdict on it is not "unchanged" (all of them with ``show_all``)."""
    tables: list[TableSpec[_ChangeRow]] = []
    for metric in METRICS.values():
        rows = [
            _ChangeRow(b, d)
            for b in c.benchmarks
            for d in b.metrics
            if d.key == metric.key and (show_all or d.verdict != "unchanged")
        ]
        if not rows:
            continue
        unit = metric.unit
        applied = rows[0].delta.metric
        columns: list[Column[_ChangeRow]] = [
            Column("benchmark", lambda r: r.bench.name, no_wrap=True),
            Column(f"base ({unit})", lambda r: format_value(r.delta.metric, r.delta.base), "right"),
            Column(f"head ({unit})", lambda r: format_value(r.delta.metric, r.delta.head), "right"),
            Column(f"Δ ({unit})", lambda r: format_delta(r.delta), "right"),
            Column("change", lambda r: format_change(r.delta), "right"),
        ]
        if isinstance(metric.rule, TimeRule):
            columns.append(
                Column("p", lambda r: "—" if r.delta.p_value is None else f"{r.delta.p_value:.3g}", "right")
            )
        columns += [
            Column("verdict", lambda r: r.delta.verdict, style=lambda r: _VERDICT_STYLE[r.delta.verdict]),
            Column("note", lambda r: r.delta.note),
        ]
        rule = _rule_text(applied, c.floors.get(metric.key, 0.0))
        tables.append(TableSpec(f"{metric.label} [{metric.key}] — rule: {rule}", columns, rows))
    return tables


def _rule_text(metric: Metric, floor: float = 0.0) -> str:
    rule = metric.rule
    if isinstance(rule, Exact):
        return "exact"
    if isinstance(rule, TimeRule):
        noise = f", beyond the noise between the runs (±{floor:.0%})" if floor > rule.rel else ""
        return (
            f"median ±{rule.rel:.0%} and ±{rule.abs_floor * metric.scale:g} {metric.unit}{noise}, "
            f"Mann-Whitney p < {rule.alpha:g}"
        )
    if rule.rel == 0 and rule.abs == 0:
        return "exact (same environment and seed)"
    parts = []
    if rule.rel:
        parts.append(f"±{rule.rel:.0%}")
    if rule.abs:
        parts.append(f"±{rule.abs * metric.scale:g} {metric.unit}")
    return " and ".join(parts) or "any change"


def headline(c: Comparison) -> str:
    """One line: the outcome and the exit code."""
    if c.blocked:
        return f"NOT COMPARABLE (exit {EXIT_INCOMPARABLE}): " + "; ".join(c.incomparable)
    counts = c.counts()
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    gating = [b for b in c.benchmarks if b.gates]
    if gating:
        what = []
        for b in gating:
            keys = [d.key for d in b.metrics if d.verdict == "regressed"]
            what.append(f"{b.name} ({', '.join(keys) if keys else b.notes[0]})")
        return f"REGRESSION (exit {EXIT_REGRESSION}): {'; '.join(what)}. [{summary}]"
    return f"no regression (exit {EXIT_OK}). [{summary}]"


def warnings_of(c: Comparison) -> list[str]:
    out: list[str] = []
    if c.incomparable and c.allow_incomparable:
        out.append(
            "RUNS ARE NOT COMPARABLE, compared anyway (--allow-incomparable): " + "; ".join(c.incomparable)
        )
    out += [f"environment differs: {n}" for n in c.env_notes]
    if c.exact_accuracy:
        out.append("same environment with deterministic algorithms: accuracy compared exactly where seeds match")
    if c.thresholds:
        out.append("thresholds overridden: " + ", ".join(f"{k}={v:g}" for k, v in c.thresholds.items()))
    text = noise_text(c)
    if text:
        out.append(text)
    return out


def noise_text(c: Comparison) -> str:
    """A sentence on the noise between the runs where it, not the rules' ``rel``, sets the time
    thresholds (a noisy machine), and when head ran faster or slower across the board."""
    if c.noise is None:
        return ""
    widened = [
        f"{METRICS[key].label} ±{floor:.0%} (σ={c.noise.sigma[key]:.2f})"
        for key, floor in c.floors.items()
        if floor > getattr(METRICS[key].rule, "rel", 0.0)
    ]
    parts = []
    if widened:
        parts.append(
            "time noise between these runs: moves within " + ", ".join(widened)
            + f" are reported inconclusive, not regressed (σ of log ratios over {c.noise.n} medians); "
            "a quiet, fixed machine is needed to gate on smaller ones"
        )
    if abs(c.noise.ratio - 1) > TimeRule().rel:
        parts.append(f"head's times are {c.noise.ratio:.2f}× base's at the median over all benchmarks")
    return "; ".join(parts)


def render_terminal(c: Comparison, *, show_all: bool = False) -> RenderableType:
    parts: list[RenderableType] = [
        Text(f"bench compare  base: {c.base.path}  head: {c.head.path}", style="bold"),
    ]
    for w in warnings_of(c):
        parts.append(Text(("⚠ " if "NOT COMPARABLE" in w else "note: ") + w,
                          style="bold red" if "NOT COMPARABLE" in w else "yellow"))
    if not c.blocked:
        summary = summary_table(c, show_all=show_all)
        if summary.rows:
            parts.append(summary.to_rich())
        parts += [t.to_rich() for t in change_tables(c, show_all=show_all)]
    style = "bold green" if c.exit_code == EXIT_OK else "bold red"
    parts.append(Text(headline(c), style=style))
    return Group(*parts)


def to_markdown(c: Comparison) -> str:
    """For a CI job summary or a pull-request comment."""
    icon = {EXIT_OK: "✅", EXIT_REGRESSION: "❌", EXIT_INCOMPARABLE: "⚠️"}.get(c.exit_code, "")
    lines = [
        f"## archbench: {icon} {headline(c)}",
        "",
        f"base `{c.base.path}` ({_run_text(c.base)}) → head `{c.head.path}` ({_run_text(c.head)})",
        "",
    ]
    for w in warnings_of(c):
        lines += [f"> **{'Warning' if 'NOT COMPARABLE' in w else 'Note'}:** {w}", ""]
    if c.blocked:
        lines += ["Pass `--allow-incomparable` to compare these runs anyway.", ""]
        return "\n".join(lines)
    summary = summary_table(c)
    if summary.rows:
        lines += [f"### {summary.title}", "", summary.to_markdown(), ""]
    for table in change_tables(c):
        lines += [f"#### {table.title}", "", table.to_markdown(), ""]
    everything = summary_table(c, show_all=True)
    lines += ["<details><summary>All benchmarks</summary>", "", everything.to_markdown(), "", "</details>", ""]
    return "\n".join(lines)


def _run_text(r: Results) -> str:
    commit = (r.commit or "")[:12]
    return ", ".join(x for x in (r.env.device, r.env.device_name or "", r.env.profile, commit) if x)


def to_json(c: Comparison) -> dict[str, Any]:
    return {
        "base": c.base.path,
        "head": c.head.path,
        "exit_code": c.exit_code,
        "headline": headline(c),
        "incomparable": list(c.incomparable),
        "allow_incomparable": c.allow_incomparable,
        "environment_notes": list(c.env_notes),
        "exact_accuracy": c.exact_accuracy,
        "thresholds": dict(c.thresholds),
        "time_noise": None if c.noise is None else {
            "sigma": dict(c.noise.sigma), "median_ratio": c.noise.ratio, "medians": dict(c.noise.medians),
            "floor": dict(c.floors),
        },
        "counts": {s.value: n for s, n in c.counts().items()},
        "benchmarks": [
            {
                "name": b.name,
                "status": b.status.value,
                "gates": b.gates,
                "newly_failing": b.newly_failing,
                "notes": list(b.notes),
                "metrics": [
                    {
                        "key": d.key,
                        "unit": d.metric.unit,
                        "scale": d.metric.scale,
                        "base": d.base,
                        "head": d.head,
                        "rel": d.rel,
                        "new_nonzero": d.new_nonzero,
                        "p_value": d.p_value,
                        "verdict": d.verdict,
                        "rule": _rule_text(d.metric, c.floors.get(d.key, 0.0)),
                        "note": d.note,
                    }
                    for d in b.metrics
                ],
            }
            for b in c.benchmarks
        ],
    }


def to_html(c: Comparison, *, cost: str = "macs") -> str:
    """A single self-contained page: the verdict tables, then the charts for both runs."""
    from bench import charts

    blocks: list[charts.Block] = [f"<h1>archbench compare</h1><p class='headline exit-{c.exit_code}'>{html.escape(headline(c))}</p>"]
    blocks.append(
        f"<p>base <code>{html.escape(c.base.path)}</code> ({html.escape(_run_text(c.base))}) → head <code>{html.escape(c.head.path)}</code> ({html.escape(_run_text(c.head))})</p>"
    )
    for w in warnings_of(c):
        blocks.append(f"<p class='warning'>{html.escape(w)}</p>")
    if not c.blocked:
        blocks.append(summary_table(c, show_all=True).to_html())
        blocks += [t.to_html() for t in change_tables(c)]
    blocks += charts.run_charts([("base", c.base), ("head", c.head)], cost=cost)
    return charts.page("archbench compare", blocks)


# ----------------------------------------------------------------------------------------------
# 3. CLI
# ----------------------------------------------------------------------------------------------


def add_parser(subparsers: Any) -> None:
    from bench import charts

    p = subparsers.add_parser(
        "compare",
        help="compare two results files; exit 1 on a regression",
        description=__doc__.split("\n\n")[0] + " Exit 0 clean, 1 regression or newly failing case, "
        "2 unusable input, 3 runs not comparable.",
    )
    p.add_argument("base", type=Path, help="results of the baseline (pytest --benchmark-json)")
    p.add_argument("head", type=Path, help="results to check against the baseline")
    p.add_argument(
        "--threshold", action="append", default=[], metavar="METRIC=VALUE",
        help="override a metric's threshold (repeatable): relative for times and memory "
        "(time_forward_s=0.15), a fraction for accuracy (accuracy_test=0.05)",
    )
    p.add_argument(
        "--allow-incomparable", action="store_true",
        help="compare runs from different devices or profiles anyway (loudly flagged)",
    )
    p.add_argument(
        "--noise-z", type=float, metavar="Z",
        help="time moves within exp(Z·σ)-1 of the noise σ between the runs are inconclusive "
        "(default 7; 0 trusts every move beyond the relative threshold)",
    )
    p.add_argument("--all", dest="show_all", action="store_true", help="list unchanged benchmarks and metrics too")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown summary (CI job summary, PR comment)")
    p.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report with charts")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the verdicts as JSON")
    p.add_argument("--cost", choices=sorted(charts.COSTS), default="macs", help="initial x axis of the accuracy chart")
    p.set_defaults(func=lambda args: _cli(args, p))


def _cli(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    thresholds: dict[str, float] = {}
    for text in args.threshold:
        try:
            key, value = parse_threshold(text)
        except ValueError as exc:
            parser.error(str(exc))  # exits 2: a usage error, like any other unusable input
        thresholds[key] = value
    options = CompareOptions(
        thresholds=thresholds, allow_incomparable=args.allow_incomparable, show_all=args.show_all,
        markdown=args.markdown, html=args.html, json=args.json, cost=args.cost, noise_z=args.noise_z,
    )
    return run(args.base, args.head, options)


def make_console(file: Any = None) -> Console:
    """A console for reports: wide when not a terminal (CI logs), so tables are not squeezed."""
    console = Console(file=file)
    if not console.is_terminal:
        console = Console(file=file, width=max(console.width, 160))
    return console


def run(base_path: Path, head_path: Path, options: CompareOptions, console: Console | None = None) -> int:
    """Load, compare, render, write the requested files; return the exit code. Errors go to stderr
    unless a console is given (tests pass one and read everything from it)."""
    errors = console or make_console(sys.stderr)
    console = console or make_console()
    try:
        base = load_results(base_path)
        head = load_results(head_path)
    except ResultsError as exc:
        errors.print(Text(f"bench compare: unusable input: {exc}", style="bold red"))
        return exc.exit_code
    comparison = compare_runs(base, head, options)
    console.print(render_terminal(comparison, show_all=options.show_all))
    if comparison.blocked:
        errors.print(Text(
            f"bench compare: runs not comparable: {'; '.join(comparison.incomparable)}. "
            "Pass --allow-incomparable to compare anyway.",
            style="bold red",
        ))
    outputs: list[tuple[Path | None, Callable[[], str]]] = [
        (options.markdown, lambda: to_markdown(comparison)),
        (options.json, lambda: json.dumps(to_json(comparison), indent=2, allow_nan=False) + "\n"),
        (options.html, lambda: to_html(comparison, cost=options.cost)),
    ]
    for path, render in outputs:
        if path is not None:
            write_text(path, render())
            console.print(Text(f"wrote {path}", style="dim"))
    return comparison.exit_code


def write_text(path: Path, text: str) -> None:
    """Write via a temporary file, so that a failed run never leaves half a report behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


__all__ = [
    "BenchmarkComparison",
    "CompareOptions",
    "Comparison",
    "MetricDelta",
    "Status",
    "TimeNoise",
    "compare_benchmark",
    "compare_runs",
    "evaluate_metric",
    "parse_threshold",
    "render_terminal",
    "run",
    "time_noise",
    "to_html",
    "to_json",
    "to_markdown",
]
