"""What ``bench compare`` says about two runs, whatever the output format: the tables of verdicts, the
"where it moved" module tables, the headline, the warnings and the rules in words.

Data flow: :func:`~bench.judge.verdicts.compare_runs` gives a :class:`~bench.judge.verdicts.Comparison`
(pure verdicts); this module turns it into :class:`~bench.render.table.TableSpec` tables and
:class:`~bench.render.table.Message` lines; one module per format lays them out:
:mod:`bench.render.terminal`, :mod:`bench.render.markdown`, :mod:`bench.render.json_report`,
:mod:`bench.render.html_report`.

The terminal stays short however many benchmarks there are: every regression and failure in full,
the other changes counted, the largest moves shown. ``--json`` holds every verdict; Markdown and
HTML keep every regression and failure and bound the rest (:data:`TERMINAL_ROWS` and its siblings).
Exit codes are :mod:`bench.record.exits`'; the command line is :mod:`bench.commands.compare`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

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


def is_paired(d: MetricDelta) -> bool:
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
        rule = rule_text(applied, c.floors.get(metric.key, 0.0), paired=is_paired(candidates[0].delta),
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


WHERE_TITLE = "Where it moved (per module)"


def where_intro(left: int) -> str:
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


def run_text(r: Results) -> str:
    """A run in a few words: device, its name, profile and commit."""
    commit = (r.commit or "")[:12]
    return ", ".join(x for x in (r.env.device, r.env.device_name or "", r.env.profile, commit) if x)


__all__ = [
    "HTML_ROWS", "MARKDOWN_MODULE_CASES", "MARKDOWN_ROWS", "TERMINAL_MODULE_CASES", "TERMINAL_ROWS", "WHERE_TITLE",
    "ChangeRow", "benchmark_module_diff", "change_tables", "format_change", "format_delta", "headline", "is_paired",
    "module_table", "module_tables", "moved_module_diffs", "noise_text", "rule_text", "run_text", "summary_table",
    "throttled_text", "warnings_of", "where_intro",
]
