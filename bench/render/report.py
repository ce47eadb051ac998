"""What ``bench report`` shows of one run: the measured numbers, and a page with its charts.

The terminal gets the measured numbers (one table per record kind, columns from
:data:`bench.record.metrics.METRICS`). The HTML page adds, for the same run: accuracy against a chosen cost,
one panel per report on a log cost axis (labelled points, Pareto fronts; docs/charts.md), per-case time
boxplots with accuracy as a line and accuracy boxplots over seeds (grouped by report), training curves,
per case measured with ``--bench-modules`` its time and MACs per module (stacked bars), and a table of each report's own numbers beside the measured ones.

The report's numbers come from ``suites``; a case the registry
does not know (or a registry that cannot be imported) leaves those cells empty with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.record.metrics import METRICS, Metric
from bench.record.results import Benchmark, Results
from bench.render import charts
from bench.render.table import Column, TableSpec, format_value


def measured_tables(results: Results) -> list[TableSpec[Benchmark]]:
    """One table per record kind; a column for every metric some record of that kind has."""
    tables: list[TableSpec[Benchmark]] = []
    for kind in ("step", "train"):
        rows = [b for b in results if b.record.kind == kind]
        if not rows:
            continue
        metrics = [m for m in METRICS.values() if any(getattr(b.record, m.key, None) is not None for b in rows)]
        columns: list[Column[Benchmark]] = [
            Column("benchmark", lambda b: b.name, no_wrap=True, priority=9, code=True),
            Column("status", lambda b: b.record.status, style=lambda b: "" if b.ok else "bold red", no_wrap=True,
                   priority=8),
        ]
        columns += [_metric_column(m) for m in metrics]
        if any(not b.ok for b in rows):
            columns.append(Column(
                "error", lambda b: (b.record.error or "").splitlines()[0] if b.record.error else "", priority=1
            ))
        tables.append(TableSpec(f"{kind} benchmarks ({results.env.device}, profile {results.env.profile})", columns, rows))
    return tables


#: Which metric columns a narrow terminal keeps longest (the rest default to 4).
_PRIORITY = {
    "params_total": 7, "macs_forward": 7, "accuracy_test": 7, "time_epoch_s": 6, "time_forward_s": 6,
    "time_backward_s": 6, "time_optimizer_s": 5, "time_inference_s": 5, "params_trainable": 3,
    "accuracy_test_deformed": 3,
}


def _metric_column(metric: Metric) -> Column[Benchmark]:
    return Column(
        f"{metric.label} ({metric.unit})", lambda b: format_value(metric, getattr(b.record, metric.key, None)), "right",
        priority=_PRIORITY.get(metric.key, 4),
    )


@dataclass(frozen=True)
class ReportedRow:
    """A case's numbers as its report states them, beside what this run measured."""

    case: str
    report: str
    params_reported: str
    params_measured: str
    params_delta: str
    accuracy_reported: str
    accuracy_measured: str
    epoch_reported: str
    epoch_measured: str
    note: str


def reported_rows(results: Results) -> list[ReportedRow]:
    """One row per case of the run; cells the registry cannot fill say why."""
    cases = results.cases()
    names = list(dict.fromkeys(b.record.case for b in results))
    lookup = _reported_numbers(names)
    params_m, acc_m, epoch_m = METRICS["params_total"], METRICS["accuracy_test"], METRICS["time_epoch_s"]
    rows: list[ReportedRow] = []
    for name in names:
        c = cases.get(name)
        measured_params = c.value("params_total") if c else None
        measured_acc = c.value("accuracy_test") if c else None
        measured_epoch = c.train.time_epoch_s if c and c.train else None
        dataset = c.train.dataset if c and c.train else None
        found = lookup[name]
        if isinstance(found, str):
            rows.append(ReportedRow(
                name, "—", "—", format_value(params_m, measured_params), "—", "—",
                _acc_text(measured_acc, dataset), "—", format_value(epoch_m, measured_epoch), found,
            ))
            continue
        report, reported = found
        ref_params = getattr(reported, "params", None) or getattr(reported, "params_approx", None)
        delta = "—"
        if ref_params and measured_params is not None:
            delta = f"{(measured_params - ref_params) / ref_params:+.2%}"
        accuracy: Mapping[str, float] = getattr(reported, "accuracy", {}) or {}
        seconds: Mapping[str, float] = getattr(reported, "seconds_per_epoch", {}) or {}
        approx = "≈" if not getattr(reported, "params", None) and ref_params else ""
        rows.append(ReportedRow(
            case=name,
            report=report,
            params_reported=approx + format_value(params_m, ref_params) if ref_params else "—",
            params_measured=format_value(params_m, measured_params),
            params_delta=delta,
            accuracy_reported=", ".join(f"{ds} {v * acc_m.scale:.2f}" for ds, v in accuracy.items()) or "—",
            accuracy_measured=_acc_text(measured_acc, dataset),
            epoch_reported=", ".join(f"{ds} {v:.2f}" for ds, v in seconds.items()) or "—",
            epoch_measured=format_value(epoch_m, measured_epoch),
            note=getattr(reported, "note", "") or "",
        ))
    return rows


def _acc_text(value: float | None, dataset: str | None) -> str:
    if value is None:
        return "—"
    text = f"{value * METRICS['accuracy_test'].scale:.2f}"
    return f"{dataset} {text}" if dataset else text


def _reported_numbers(names: Sequence[str]) -> dict[str, tuple[str, Any] | str]:
    """name → (report, Reported), or the reason there is none."""
    try:
        import suites

        suites.registry()
    except Exception as exc:  # noqa: BLE001 -- any failure of the registry degrades the table, with the reason
        reason = f"case registry unavailable ({type(exc).__name__}: {exc})"
        return {n: reason for n in names}
    out: dict[str, tuple[str, Any] | str] = {}
    for name in names:
        try:
            case = suites.get_case(name)
        except (KeyError, ValueError):
            out[name] = "not a case of the registry"
            continue
        out[name] = (charts.report_of(case.suite), case.reported)
    return out


def reported_table(results: Results) -> TableSpec[ReportedRow]:
    p, a, e = METRICS["params_total"], METRICS["accuracy_test"], METRICS["time_epoch_s"]
    columns: list[Column[ReportedRow]] = [
        Column("case", lambda r: r.case, no_wrap=True, code=True),
        Column("report", lambda r: r.report),
        Column(f"{p.label}, report ({p.unit})", lambda r: r.params_reported, "right"),
        Column(f"{p.label}, measured ({p.unit})", lambda r: r.params_measured, "right"),
        Column("Δ params", lambda r: r.params_delta, "right"),
        Column(f"{a.label}, report ({a.unit})", lambda r: r.accuracy_reported, "right"),
        Column(f"{a.label}, measured ({a.unit})", lambda r: r.accuracy_measured, "right"),
        Column(f"{e.label}, report ({e.unit})", lambda r: r.epoch_reported, "right"),
        Column(f"{e.label}, measured ({e.unit})", lambda r: r.epoch_measured, "right"),
        Column("note", lambda r: r.note),
    ]
    return TableSpec("The reports' numbers beside the measured ones", columns, reported_rows(results))
