"""``bench compare BASE HEAD``: what got slower, bigger or less accurate between two runs.

This module renders a :class:`~bench.judge.verdicts.Comparison` and holds the command line; the verdicts
are :mod:`bench.judge.verdicts` (pure), the statistics :mod:`bench.judge.stats`, tables and formatting
:mod:`bench.render.table`. Data flow: arguments → :class:`~bench.judge.verdicts.CompareSettings` (how to
judge) and :class:`OutputOptions` (what to write) → :func:`~bench.judge.verdicts.compare_runs` → the
renderers: :func:`render_terminal`, :func:`to_markdown`, :func:`to_json`, :func:`to_html`.

The terminal stays short however many benchmarks there are: every regression and failure in full,
the other changes counted, the largest moves shown. ``--json`` holds every verdict; Markdown and
HTML keep every regression and failure and bound the rest.

Exit codes (:mod:`bench.render.table`): 0 no regression; 1 a regression or a newly failing case; 2
unusable input (see :mod:`bench.record.results`); 3 runs not comparable (different device, profile, modes, or
initial weights for a case: docs/weights.md) unless
``--allow-incomparable``. A crash of the tool exits 70 (:mod:`bench.commands`), never 1.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rich.console import Group, RenderableType
from rich.text import Text

from bench.judge import module_diff as md
from bench.judge.verdicts import (
    PAIRED_TEST,
    BenchmarkComparison,
    Comparison,
    MetricDelta,
    Status,
    paired_sides,
)
from bench.record.exits import EXIT_INCOMPARABLE, EXIT_OK, EXIT_REGRESSION
from bench.record.metrics import METRICS, Exact, Metric, Reported, TimeRule
from bench.record.results import Results
from bench.record.schema import quantity
from bench.render.table import (
    Column,
    Level,
    Message,
    TableSpec,
    format_value,
    md_code,
    md_text,
)

#: Rows of each table beyond the regressions and failures: terminal, Markdown (a PR comment or a
#: job summary, which GitHub caps at 1 MiB), HTML.
TERMINAL_ROWS = 15
MARKDOWN_ROWS = 100
HTML_ROWS = 2000


# ----------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------

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
    "removed": "yellow", "added": "cyan", "unchanged": "dim", "reported": "dim",
}
#: Order in which benchmarks are listed: what needs attention first.
_STATUS_ORDER = (
    Status.FAILED, Status.REGRESSED, Status.NOT_COMPARABLE, Status.INCONCLUSIVE, Status.MISSING,
    Status.NEW, Status.FIXED, Status.IMPROVED, Status.UNCHANGED,
)
#: Listed in full whatever the bound: what makes the comparison fail, or what broke.
_IN_FULL = frozenset({Status.FAILED, Status.REGRESSED})


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
    """Absolute change in the metric's display unit, signed."""
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


def rule_text(metric: Metric, floor: float = 0.0, *, paired: bool = False, explicit: bool = False) -> str:
    """The rule ``metric`` was judged by, in words (thresholds as applied). ``paired``: judged on
    rounds measured in alternation (``explicit``: the threshold came from ``--threshold``)."""
    rule = metric.rule
    if isinstance(rule, Exact):
        return "exact"
    if isinstance(rule, Reported):
        return f"reported, not judged ({rule.why})"
    if isinstance(rule, TimeRule) and paired:
        threshold = rule.rel if explicit else rule.paired_rel
        return (f"paired rounds: Hodges–Lehmann ratio ±{threshold:.0%} and signed-rank p < {rule.paired_alpha:g}, "
                "Holm-corrected over the run's time metrics")
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


def _is_paired(d: MetricDelta) -> bool:
    return d.test == PAIRED_TEST


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------

T = TypeVar("T")


def _bounded(items: Sequence[T], in_full: Callable[[T], bool], limit: int | None) -> tuple[list[T], list[T]]:
    """(shown, left out): every item ``in_full`` wants, then the first ``limit`` of the others
    (``items`` come ordered by importance)."""
    if limit is None:
        return list(items), []
    shown: list[T] = []
    left: list[T] = []
    others = 0
    for item in items:
        if in_full(item):
            shown.append(item)
        elif others < limit:
            shown.append(item)
            others += 1
        else:
            left.append(item)
    return shown, left


def _left_out_text(counts: Mapping[str, int], what: str) -> str:
    parts = ", ".join(f"{n} {label}" for label, n in counts.items() if n)
    return f"{parts} {what} not shown (the smallest moves; --json lists every one)" if parts else ""


def summary_table(
    c: Comparison, *, show_all: bool = False, limit: int | None = None
) -> TableSpec[BenchmarkComparison]:
    """One row per benchmark that changed (every one with ``show_all``), what needs attention first
    and the largest moves first within a status. ``limit`` bounds the rows other than regressions
    and failures; the footer counts what was left out."""
    candidates = sorted(
        (b for b in c.benchmarks if show_all or b.status is not Status.UNCHANGED),
        key=lambda b: (_STATUS_ORDER.index(b.status), -b.size),
    )
    rows, left = _bounded(candidates, lambda b: b.status in _IN_FULL, limit)
    columns: list[Column[BenchmarkComparison]] = [
        Column("benchmark", lambda b: b.name, no_wrap=True, priority=9, code=True),
        Column("status", lambda b: b.status.value, style=lambda b: _STATUS_STYLE[b.status], no_wrap=True,
               priority=8),
        Column("what changed", _summary_note, priority=5),
    ]
    unchanged = 0 if show_all else c.counts()[Status.UNCHANGED]
    left_counts: dict[str, int] = {}
    for b in left:
        left_counts[b.status.value] = left_counts.get(b.status.value, 0) + 1
    title = "Benchmarks" + (f" ({unchanged} unchanged not shown)" if unchanged else "")
    return TableSpec(title, columns, rows, footer=_left_out_text(left_counts, "more"))


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """A row of a per-metric table: one benchmark's verdict on that metric."""

    bench: BenchmarkComparison
    delta: MetricDelta


def change_tables(c: Comparison, *, show_all: bool = False, limit: int | None = None) -> list[TableSpec[ChangeRow]]:
    """One table per metric (units belong in headers, and a metric has one unit), listing every
    benchmark whose verdict on it is not "unchanged" (all of them with ``show_all``): regressions
    in full, then the largest moves up to ``limit``."""
    per_metric: dict[str, list[ChangeRow]] = {key: [] for key in METRICS}
    for b in c.benchmarks:
        for d in b.metrics:
            if show_all or d.verdict not in ("unchanged", "reported"):
                per_metric[d.key].append(ChangeRow(b, d))
    tables: list[TableSpec[ChangeRow]] = []
    for metric in METRICS.values():
        candidates = sorted(per_metric[metric.key], key=lambda r: (r.delta.verdict != "regressed", -r.delta.size))
        if not candidates:
            continue
        rows, left = _bounded(candidates, lambda r: r.delta.verdict == "regressed", limit)
        unit = metric.unit
        applied = candidates[0].delta.metric
        columns: list[Column[ChangeRow]] = [
            Column("benchmark", lambda r: r.bench.name, no_wrap=True, priority=9, code=True),
            Column(f"base ({unit})", lambda r: format_value(r.delta.metric, r.delta.base), "right", priority=5),
            Column(f"head ({unit})", lambda r: format_value(r.delta.metric, r.delta.head), "right", priority=6),
            Column(f"Δ ({unit})", lambda r: format_delta(r.delta), "right", priority=3),
            Column("change", lambda r: format_change(r.delta), "right", priority=7),
        ]
        if isinstance(metric.rule, TimeRule):
            columns.append(Column(
                "p", lambda r: "—" if r.delta.p_value is None else f"{r.delta.p_value:.3g}", "right", priority=2,
            ))
        columns += [
            Column("verdict", lambda r: r.delta.verdict, style=lambda r: _VERDICT_STYLE[r.delta.verdict],
                   no_wrap=True, priority=8),
            Column("note", lambda r: r.delta.note, priority=1),
        ]
        left_counts: dict[str, int] = {}
        for r in left:
            left_counts[r.delta.verdict] = left_counts.get(r.delta.verdict, 0) + 1
        rule = rule_text(applied, c.floors.get(metric.key, 0.0), paired=_is_paired(candidates[0].delta),
                         explicit=metric.key in c.thresholds)
        tables.append(TableSpec(f"{metric.label} [{metric.key}] — rule: {rule}", columns, rows,
                                footer=_left_out_text(left_counts, "more")))
    return tables


# ----------------------------------------------------------------------------------------------
# where it moved: the per-module diff of cases that regressed or improved (--bench-modules)
# ----------------------------------------------------------------------------------------------

#: The statuses whose per-module diff is shown: a verdict that asks "where?".
_MOVED = (Status.REGRESSED, Status.IMPROVED)
#: Cases given a module diff in the terminal and in Markdown (largest moves first); the HTML page and
#: ``--json`` have every one.
TERMINAL_MODULE_CASES = 10
MARKDOWN_MODULE_CASES = 50
_MS = METRICS["time_forward_s"]


def benchmark_module_diff(b: BenchmarkComparison) -> md.ModuleDiff | None:
    """The per-module diff of one benchmark, paired when both records came from one ``bench ab`` run;
    ``None`` unless both sides carry a breakdown."""
    if b.base is None or b.head is None:
        return None
    return md.module_diff(b.base.record, b.head.record, paired=paired_sides(b.base, b.head) is not None)


def moved_module_diffs(c: Comparison) -> list[tuple[BenchmarkComparison, md.ModuleDiff]]:
    """Every regressed or improved benchmark with a breakdown on both sides, with its diff:
    regressions first, then the largest moves."""
    if c.blocked:
        return []
    moved = sorted((b for b in c.benchmarks if b.status in _MOVED),
                   key=lambda b: (_MOVED.index(b.status), -b.size))
    return [(b, diff) for b in moved if (diff := benchmark_module_diff(b)) is not None]


def _shown_phases(b: BenchmarkComparison, diff: md.ModuleDiff) -> list[str]:
    """The phases whose own verdict moved (the question is where *that* move went), else all."""
    moved = [p for p in diff.phases
             if any(d.key == quantity(p).time and d.verdict not in ("unchanged", "reported") for d in b.metrics)]
    return moved or list(diff.phases)


def _ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    text = format_value(_MS, abs(value) if signed else value)
    return (("+" if value > 0 else "-" if value < 0 else "") + text) if signed else text


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


def _share(m: md.ModuleMove) -> str:
    if m.share is None:
        return "—"
    text = f"{m.share:.0%}"
    return "0%" if text == "-0%" else text  # a sign on nothing reads as a move


def _change(m: md.ModuleMove) -> str:
    return m.kind if m.kind in ("added", "removed") else "—" if m.change is None else f"{m.change:+.1%}"


def _module_style(m: md.ModuleMove) -> str:
    return "dim" if m.kind == "rest" else "bold" if m.emphasised else ""


def module_table(b: BenchmarkComparison, diff: md.ModuleDiff, phase: str,
                 top: int | None = md.DEFAULT_TOP) -> TableSpec[md.ModuleMove]:
    """The ``top`` modules that moved most in one phase of one case, then the rest of the phase's
    move (:data:`~bench.judge.module_diff.REST`), each with its share of the case's move."""
    p = diff.phases[phase]
    shown = list(p.top(top))
    rows = shown + ([p.rest] if p.rest is not None else [])
    unit = _MS.unit
    columns: list[Column[md.ModuleMove]] = [
        Column("module", lambda m: m.name, no_wrap=True, priority=9, code=True, style=_module_style),
        Column("type", lambda m: m.type, no_wrap=True, priority=5, style=_module_style),
        Column(f"base ({unit})", lambda m: _ms(m.base_s), "right", priority=3),
        Column(f"head ({unit})", lambda m: _ms(m.head_s), "right", priority=4),
        Column(f"Δ ({unit})", lambda m: _ms(m.delta_s, signed=True), "right", priority=8),
        Column("change", _change, "right", priority=6),
        Column("share of move", _share, "right", priority=7),
    ]
    if diff.paired:
        columns.append(Column("95% CI", lambda m: "—" if m.interval is None else
                              f"{m.interval[0]:+.1%} to {m.interval[1]:+.1%}", "right", priority=2))
    how = ("paired rounds: Hodges–Lehmann per module" if diff.paired else "medians per module")
    rel = None if p.delta_s is None or not p.base_s else p.delta_s / p.base_s
    moved = f"{_ms(p.delta_s, signed=True)} {unit} ({_pct(rel)})" if p.delta_s is not None else "no phase time"
    left = len(p.moves) - len(shown)
    footer = [f"{left} more module(s) moved less (--modules-top N shows more)"] if left > 0 else []
    if p.rest is not None:
        footer.append(f"shares are of the {phase} move {moved}; {md.REST}: the part no module accounts for")
    coverage = [f"{side} {v:.0%}" for side, v in zip(("base", "head"), p.coverage) if v is not None]
    if coverage:
        footer.append("the modules cover " + ", ".join(coverage) + f" of the {phase} time")
    return TableSpec(f"where {b.name} moved, {phase} {moved} — {how}, depth {diff.depth}", columns, rows,
                     footer="; ".join(footer))


def module_tables(c: Comparison, *, top: int | None = md.DEFAULT_TOP,
                  cases: int | None = None) -> tuple[list[TableSpec[md.ModuleMove]], int]:
    """Per moved case with a breakdown (at most ``cases`` of them), a table per phase that moved;
    and how many cases were left out."""
    diffs = moved_module_diffs(c)
    shown = diffs if cases is None else diffs[:cases]
    tables = [module_table(b, diff, phase, top) for b, diff in shown for phase in _shown_phases(b, diff)]
    return tables, len(diffs) - len(shown)


_WHERE_TITLE = "Where it moved (per module)"


def _where_intro(left: int) -> str:
    more = f" {left} more moved case(s) not shown (--json lists every one)." if left else ""
    return ("Per regressed or improved case with a module breakdown (--bench-modules): the modules whose time "
            "moved most, with their share of the case's move in that phase; bold: deformable, attention and "
            "dynamic-convolution modules (docs/module-diff.md)." + more)

# ----------------------------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------------------------

#: Gating benchmarks named in the headline; the rest are counted (the tables list them all).
_HEADLINE_NAMES = 10


def headline(c: Comparison) -> str:
    """One line: the outcome and the exit code."""
    if c.blocked:
        return f"NOT COMPARABLE (exit {EXIT_INCOMPARABLE}): " + "; ".join(c.incomparable)
    counts = c.counts()
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    gating = [b for b in c.benchmarks if b.gates]
    if gating:
        what = []
        for b in gating[:_HEADLINE_NAMES]:
            keys = [d.key for d in b.metrics if d.verdict == "regressed"]
            what.append(f"{b.name} ({', '.join(keys) if keys else b.notes[0]})")
        more = f"; and {len(gating) - _HEADLINE_NAMES} more" if len(gating) > _HEADLINE_NAMES else ""
        return f"REGRESSION (exit {EXIT_REGRESSION}): {'; '.join(what)}{more}. [{summary}]"
    return f"no regression (exit {EXIT_OK}). [{summary}]"


def warnings_of(c: Comparison) -> list[Message]:
    """What the reader must know before the tables, each with its level."""
    out: list[Message] = []
    if c.incomparable and c.allow_incomparable:
        out.append(Message(
            Level.ERROR,
            "RUNS ARE NOT COMPARABLE, compared anyway (--allow-incomparable): " + "; ".join(c.incomparable),
        ))
    out += [Message(Level.WARNING, f"environment differs: {n}") for n in c.env_notes]
    if c.exact_accuracy:
        out.append(Message(
            Level.INFO, "same environment with deterministic algorithms: accuracy compared exactly where seeds match"
        ))
    if c.thresholds:
        out.append(Message(
            Level.INFO, "thresholds overridden: " + ", ".join(f"{k}={v:g}" for k, v in c.thresholds.items())
        ))
    if c.paired is not None:
        out.append(Message(
            Level.INFO,
            f"base and head were measured in alternation (bench ab, pairing {', '.join(i[:8] for i in c.paired.ids)}): "
            f"{c.paired.family} time metrics judged on their paired rounds, Holm-corrected together",
        ))
    text = noise_text(c)
    if text and c.paired is None:
        out.append(Message(Level.WARNING, text))
    throttled = throttled_text(c)
    if throttled:
        out.append(Message(Level.WARNING, throttled))
    return out


def throttled_text(c: Comparison) -> str:
    """The cases whose GPU reported power capping or a thermal/hardware slowdown while they ran: their
    times describe the clocks as much as the code."""
    seen = []
    for b in c.benchmarks:
        sides = [(side, bench.record) for side, bench in (("base", b.base), ("head", b.head))
                 if bench is not None and bench.record.throttled]
        if sides:
            reasons = sorted({r for _, rec in sides for r in rec.throttle_reasons or []})
            seen.append(f"{b.name} ({' and '.join(s for s, _ in sides)}: {', '.join(reasons) or 'reason unknown'})")
    if not seen:
        return ""
    more = f"; and {len(seen) - _HEADLINE_NAMES} more" if len(seen) > _HEADLINE_NAMES else ""
    return ("GPU throttled during " + "; ".join(seen[:_HEADLINE_NAMES]) + more
            + ": their times reflect the clocks as well as the code")


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


_TERMINAL_PREFIX: Mapping[Level, tuple[str, str]] = {
    Level.ERROR: ("⚠ ", "bold red"),
    Level.WARNING: ("note: ", "yellow"),
    Level.INFO: ("note: ", ""),
}
_MARKDOWN_PREFIX: Mapping[Level, str] = {Level.ERROR: "Warning", Level.WARNING: "Note", Level.INFO: "Note"}


# ----------------------------------------------------------------------------------------------
# renderers
# ----------------------------------------------------------------------------------------------


def render_terminal(c: Comparison, *, show_all: bool = False, limit: int | None = TERMINAL_ROWS,
                    modules_top: int | None = md.DEFAULT_TOP) -> RenderableType:
    """The report for a terminal or CI log. Without ``show_all`` each table lists every regression
    and failure plus at most ``limit`` other rows (the largest moves); under them, where each moved
    case's time went, ``modules_top`` modules per phase."""
    bound = None if show_all else limit
    parts: list[RenderableType] = [
        Text(f"bench compare  base: {c.base.path}  head: {c.head.path}", style="bold"),
    ]
    for m in warnings_of(c):
        prefix, style = _TERMINAL_PREFIX[m.level]
        parts.append(Text(prefix + m.text, style=style))
    if not c.blocked:
        summary = summary_table(c, show_all=show_all, limit=bound)
        if summary.rows:
            parts.append(summary.to_rich())
        parts += [t.to_rich() for t in change_tables(c, show_all=show_all, limit=bound)]
        where, left = module_tables(c, top=modules_top, cases=None if show_all else TERMINAL_MODULE_CASES)
        if where:
            parts.append(Text(_WHERE_TITLE, style="bold underline"))
            parts.append(Text(_where_intro(left), style="dim"))
            parts += [t.to_rich() for t in where]
    style = "bold green" if c.exit_code == EXIT_OK else "bold red"
    parts.append(Text(headline(c), style=style))
    return Group(*parts)


def to_markdown(c: Comparison, *, limit: int | None = MARKDOWN_ROWS, modules_top: int | None = md.DEFAULT_TOP) -> str:
    """For a CI job summary or a pull-request comment. Every regression and failure is listed; the
    other rows of each table are bounded by ``limit`` (``None``: all)."""
    icon = {EXIT_OK: "✅", EXIT_REGRESSION: "❌", EXIT_INCOMPARABLE: "⚠️"}.get(c.exit_code, "")
    lines = [
        f"## archbench: {icon} {md_text(headline(c))}",
        "",
        (f"base {md_code(c.base.path, in_table=False)} ({md_text(_run_text(c.base))}) → "
         f"head {md_code(c.head.path, in_table=False)} ({md_text(_run_text(c.head))})"),
        "",
    ]
    for m in warnings_of(c):
        lines += [f"> **{_MARKDOWN_PREFIX[m.level]}:** {md_text(m.text)}", ""]
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
        lines += [f"### {_WHERE_TITLE}", "", md_text(_where_intro(left)), ""]
        for module_spec in where:
            lines += [f"#### {md_text(module_spec.title)}", "", module_spec.to_markdown(), ""]
    everything = summary_table(c, show_all=True, limit=limit)
    lines += ["<details><summary>All benchmarks</summary>", "", everything.to_markdown(), "", "</details>", ""]
    return "\n".join(lines)


def _run_text(r: Results) -> str:
    commit = (r.commit or "")[:12]
    return ", ".join(x for x in (r.env.device, r.env.device_name or "", r.env.profile, commit) if x)


def _benchmark_json(b: BenchmarkComparison, c: Comparison) -> dict[str, Any]:
    floors = c.floors
    out: dict[str, Any] = {
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
                "test": d.test or None,
                "verdict": d.verdict,
                "rule": rule_text(d.metric, floors.get(d.key, 0.0), paired=_is_paired(d),
                                  explicit=d.key in c.thresholds),
                "note": d.note,
            }
            for d in b.metrics
        ],
    }
    diff = benchmark_module_diff(b)
    if diff is not None:  # files without a breakdown keep the shape they always had
        out["modules"] = md.diff_json(diff)
    return out


def _json_envelope(c: Comparison) -> dict[str, Any]:
    return {
        "base": c.base.path,
        "head": c.head.path,
        "exit_code": c.exit_code,
        "headline": headline(c),
        "incomparable": list(c.incomparable),
        "allow_incomparable": c.allow_incomparable,
        "environment_notes": list(c.env_notes),
        "messages": [{"level": m.level.value, "text": m.text} for m in warnings_of(c)],
        "exact_accuracy": c.exact_accuracy,
        "thresholds": dict(c.thresholds),
        "time_noise": None if c.noise is None else {
            "sigma": dict(c.noise.sigma), "median_ratio": c.noise.ratio, "medians": dict(c.noise.medians),
            "floor": dict(c.floors),
        },
        "counts": {s.value: n for s, n in c.counts().items()},
    }


def to_json(c: Comparison) -> dict[str, Any]:
    """Every verdict, as a JSON object (``benchmarks`` last)."""
    return {**_json_envelope(c), "benchmarks": [_benchmark_json(b, c) for b in c.benchmarks]}


def json_chunks(c: Comparison) -> Iterator[str]:
    """:func:`to_json` as text, one benchmark per line, produced piecewise: ten thousand benchmarks
    neither pass through the indenting (pure-Python) encoder nor sit in memory as one string."""
    head = json.dumps(_json_envelope(c), indent=2, allow_nan=False, ensure_ascii=False)
    yield head[:-2] + ',\n  "benchmarks": ['
    for i, b in enumerate(c.benchmarks):
        yield ("," if i else "") + "\n    " + json.dumps(_benchmark_json(b, c), allow_nan=False,
                                                         ensure_ascii=False)
    yield "\n  ]\n}\n"


def to_html(c: Comparison, *, cost: str = "macs", limit: int | None = HTML_ROWS,
            modules_top: int | None = md.DEFAULT_TOP) -> str:
    """A single self-contained page: the verdict tables (every regression and failure, the other
    rows bounded by ``limit``), then the charts for both runs."""
    from bench.render import charts

    blocks: list[charts.Block] = [
        f"<h1>archbench compare</h1><p class='headline exit-{c.exit_code}'>{html.escape(headline(c))}</p>",
        (f"<p>base <code>{html.escape(c.base.path)}</code> ({html.escape(_run_text(c.base))}) → head "
         f"<code>{html.escape(c.head.path)}</code> ({html.escape(_run_text(c.head))})</p>"),
    ]
    for m in warnings_of(c):
        css = "note" if m.level is Level.INFO else "warning"  # charts.page styles .warning
        blocks.append(f"<p class='{css} level-{m.level.value}'>{html.escape(m.text)}</p>")
    if not c.blocked:
        blocks.append(summary_table(c, show_all=True, limit=limit).to_html())
        blocks += [t.to_html() for t in change_tables(c, limit=limit)]
        blocks += _where_html(c, modules_top)
    blocks += charts.run_charts([("base", c.base), ("head", c.head)], cost=cost)
    return charts.page("archbench compare", blocks)


def _where_html(c: Comparison, top: int | None) -> list[Any]:
    """The "where it moved" section: the tables, then per moved case the bars of time and MACs per
    module, base beside head (nothing at all for runs without breakdowns)."""
    from bench.render import charts

    diffs = moved_module_diffs(c)
    if not diffs:
        return []
    tables, _ = module_tables(c, top=top)
    # the emphasised modules' cells are bold; the page's own style sheet has no plain bold class
    blocks: list[Any] = [
        (f"<h2>{html.escape(_WHERE_TITLE)}</h2><style>.st-bold {{ font-weight: bold; }}</style>"
         f"<p class='caption'>{html.escape(_where_intro(0))}</p>"),
        *(t.to_html() for t in tables),
    ]
    blocks += charts.module_charts([("base", c.base), ("head", c.head)], cases=[b.case for b, _ in diffs])
    return blocks


__all__ = [
    "ChangeRow", "benchmark_module_diff", "change_tables", "format_change", "format_delta",
    "headline", "json_chunks", "module_table", "module_tables", "moved_module_diffs", "noise_text", "render_terminal", "rule_text", "summary_table", "to_html", "to_json", "to_markdown",
    "warnings_of",
]
