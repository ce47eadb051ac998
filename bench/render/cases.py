"""What ``bench list`` shows: every case's measured static cost beside its report's claims."""

from __future__ import annotations

from collections.abc import Sequence

from bench.measure.cases import CaseCost
from bench.record.metrics import METRICS
from bench.render.table import Column, TableSpec


def _claimed(row: CaseCost) -> str:
    if row.reported_mult_adds is not None:
        return f"{row.reported_mult_adds / 1e6:,.0f}M MA"
    if row.reported_gflops is not None:
        return f"{row.reported_gflops:g}"
    return "—"


def _reported_params(row: CaseCost) -> str:
    reported = row.reported_params
    if reported is None:
        return "—"
    return f"{reported:,.0f}" if float(reported).is_integer() else f"{reported:g}"


def cases_table(rows: Sequence[CaseCost]) -> TableSpec[CaseCost]:
    """The cases with their measured static cost beside the reports' claims."""
    params, macs = METRICS["params_total"], METRICS["macs_forward"]
    columns: list[Column[CaseCost]] = [
        Column("case", lambda r: r.case, no_wrap=True, priority=9, code=True),
        Column("suite", lambda r: r.suite, no_wrap=True, priority=4),
        Column("input", lambda r: f"{r.in_channels}×{r.input_size}²", "right", priority=3),
        Column("classes", lambda r: str(r.num_classes), "right", priority=2),
        Column(f"params ({params.unit})", lambda r: f"{r.params_total * params.scale:,.3f}", "right", priority=8),
        Column(f"trainable ({params.unit})", lambda r: f"{r.params_trainable * params.scale:,.3f}", "right",
               priority=5),
        Column("report params", _reported_params, "right", priority=6),
        Column(f"{macs.label} ({macs.unit})", lambda r: f"{r.macs_forward * macs.scale:,.3f}", "right", priority=8),
        Column("report (G)FLOPs / mult-adds", _claimed, "right", priority=6),
        Column("uncounted ops", lambda r: ", ".join(f"{k}×{v}" for k, v in r.unsupported_ops.items()), priority=1),
    ]
    return TableSpec("archbench cases (static cost at native input, batch 1)", columns, rows)
