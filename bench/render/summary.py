"""The end of ``pytest bench/``: one row per case instead of pytest-benchmark's generic table.

pytest-benchmark's own table mixes the milliseconds of a training step with the milliseconds of an
epoch, row by row. This summary puts a case's step and train records side by side: cost (params, MACs),
the phases' times, the whole-step peak memory, accuracy, and flags for what a reader must not miss (a
case that failed; a frozen backbone with random weights, whose accuracy says nothing about the
architecture). The run's JSON and an HTML report written beside it are named under the table.
"""

from __future__ import annotations

from collections.abc import Iterable

from bench.record.metrics import METRICS
from bench.record.results import CaseRecords, group_cases
from bench.record.schema import Record
from bench.render.table import Column, TableSpec, format_value, significant


def _accuracy(row: CaseRecords) -> str:
    """Test accuracy, with ``± spread`` (standard deviation over seeds) when several seeds trained."""
    metric = METRICS["accuracy_test"]
    text = format_value(metric, row.value("accuracy_test"))
    spread = row.train.accuracy_test_spread if row.train is not None else None
    return text if spread is None else f"{text} ± {significant(spread * metric.scale, 2)}"


def _metric(key: str, header: str | None = None, priority: int = 4) -> Column[CaseRecords]:
    metric = METRICS[key]
    return Column(header or f"{metric.label} ({metric.unit})", lambda r: format_value(metric, r.value(key)),
                  "right", priority=priority)


def summary_table(records: Iterable[Record], title: str = "archbench: one row per case") -> TableSpec[CaseRecords]:
    rows = list(group_cases(records).values())
    columns: list[Column[CaseRecords]] = [
        Column("case", lambda r: r.case, no_wrap=True, priority=9, code=True),
        _metric("params_total", priority=7),
        _metric("macs_forward", priority=7),
        _metric("time_forward_s", "fwd (ms)", priority=6),
        _metric("time_backward_s", "bwd (ms)", priority=6),
        _metric("time_optimizer_s", "opt (ms)", priority=5),
        _metric("time_step_s", "step (ms)", priority=5),
        _metric("mem_step_peak_bytes", "peak (MiB)", priority=5),
        Column("test acc (%)", _accuracy, "right", priority=8),
        Column("flags", CaseRecords.flags, style=lambda r: "bold red" if r.failed else "yellow" if r.flags() else "", priority=8),
    ]
    failed = sum(1 for r in rows if r.failed)
    footer = f"{len(rows)} cases" + (f", {failed} with a failed record" if failed else "")
    return TableSpec(title, columns, rows, footer)
