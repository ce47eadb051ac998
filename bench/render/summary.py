"""The end of ``pytest bench/``: one row per case instead of pytest-benchmark's generic table.

pytest-benchmark's own table mixes the milliseconds of a training step with the milliseconds of an
epoch, row by row. This summary puts a case's step and train records side by side: cost (params, MACs),
the phases' times, the whole-step peak memory, accuracy, and flags for what a reader must not miss (a
case that failed; a frozen backbone with random weights, whose accuracy says nothing about the
architecture). The run's JSON and an HTML report written beside it are named under the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bench.record.metrics import METRICS
from bench.record.schema import Record, random_frozen_backbone
from bench.render.table import Column, TableSpec, format_value, significant


@dataclass
class CaseRow:
    """A case's records of one run: its step and train record, either possibly missing."""

    case: str
    step: Record | None = None
    train: Record | None = None

    def value(self, key: str) -> float | int | None:
        """``key`` from the step record, or else the train record (static cost is on both)."""
        for record in (self.step, self.train):
            value = getattr(record, key, None) if record is not None else None
            if value is not None:
                return value  # type: ignore[no-any-return]
        return None

    def flags(self) -> str:
        out = [f"{r.kind}: {r.status}" for r in (self.step, self.train) if r is not None and r.status != "ok"]
        if self.train is not None and random_frozen_backbone(self.train):
            out.append("frozen backbone, random weights")
        return "; ".join(out)


def _accuracy(row: CaseRow) -> str:
    """Test accuracy, with ``± spread`` (standard deviation over seeds) when several seeds trained."""
    metric = METRICS["accuracy_test"]
    text = format_value(metric, row.value("accuracy_test"))
    spread = row.train.accuracy_test_spread if row.train is not None else None
    return text if spread is None else f"{text} ± {significant(spread * metric.scale, 2)}"


def case_rows(records: Iterable[Record]) -> list[CaseRow]:
    """Group records by case, in the order the cases first appear."""
    rows: dict[str, CaseRow] = {}
    for record in records:
        row = rows.setdefault(record.case, CaseRow(record.case))
        setattr(row, record.kind, record)
    return list(rows.values())


def _metric(key: str, header: str | None = None, priority: int = 4) -> Column[CaseRow]:
    metric = METRICS[key]
    return Column(header or f"{metric.label} ({metric.unit})", lambda r: format_value(metric, r.value(key)),
                  "right", priority=priority)


def summary_table(records: Iterable[Record], title: str = "archbench: one row per case") -> TableSpec[CaseRow]:
    rows = case_rows(records)
    columns: list[Column[CaseRow]] = [
        Column("case", lambda r: r.case, no_wrap=True, priority=9, code=True),
        _metric("params_total", priority=7),
        _metric("macs_forward", priority=7),
        _metric("time_forward_s", "fwd (ms)", priority=6),
        _metric("time_backward_s", "bwd (ms)", priority=6),
        _metric("time_optimizer_s", "opt (ms)", priority=5),
        _metric("time_step_s", "step (ms)", priority=5),
        _metric("mem_step_peak_bytes", "peak (MiB)", priority=5),
        Column("test acc (%)", _accuracy, "right", priority=8),
        Column("flags", CaseRow.flags, style=lambda r: "bold red" if "step:" in r.flags() or "train:" in r.flags()
               else "yellow" if r.flags() else "", priority=8),
    ]
    failed = sum(1 for r in rows if "step:" in r.flags() or "train:" in r.flags())
    footer = f"{len(rows)} cases" + (f", {failed} with a failed record" if failed else "")
    return TableSpec(title, columns, rows, footer)
