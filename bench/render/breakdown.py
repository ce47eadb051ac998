"""What ``bench profile CASE`` shows: one case's per-module breakdown as a table, with its coverage and
the instrumentation's cost under it (docs/modules.md)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from bench.record.schema import Record, quantity
from bench.render.table import Column, TableSpec


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e3:,.3f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}"


def breakdown_table(record: Record) -> TableSpec[dict[str, Any]]:
    """The breakdown table of one step record that has one (``--bench-modules``)."""
    rows: Sequence[dict[str, Any]] = record.modules or []
    fwd, bwd = quantity("forward").time, quantity("backward").time
    columns: list[Column[dict[str, Any]]] = [
        Column("module", lambda m: "  " * int(m["depth"]) + (m["name"] or "(model)"), no_wrap=True, code=True,
               style=lambda m: "" if m.get("leaf") else "bold"),
        Column("type", lambda m: str(m["type"]), no_wrap=True, priority=3),
        Column("leaf", lambda m: "•" if m.get("leaf") else "", "center", priority=2),
        Column("fwd (ms)", lambda m: _ms(m.get(fwd)), "right", priority=9),
        Column("bwd (ms)", lambda m: _ms(m.get(bwd)), "right", priority=9),
        Column("fwd share (%)", lambda m: _pct(m.get("share_forward")), "right", priority=8),
        Column("bwd share (%)", lambda m: _pct(m.get("share_backward")), "right", priority=8),
        Column("MACs (M)", lambda m: f"{m['macs_forward'] / 1e6:,.3f}", "right", priority=7),
        Column("params", lambda m: f"{m['params_total']:,}", "right", priority=6),
        Column("trainable", lambda m: f"{m['params_trainable']:,}", "right", priority=4),
        Column("activation (MiB)", lambda m: f"{m['mem_activation_bytes'] / 2**20:,.3f}", "right", priority=5),
    ]
    rounds = len((record.modules_phase_samples_s or {}).get("forward") or [])
    title = (f"{record.case}: per-module breakdown, depth {record.modules_depth} "
             f"(batch {record.batch_size}, input {record.input_size} px, {record.device}, "
             f"{rounds} rounds; medians; MACs per image)")
    return TableSpec(title, columns, rows, footer=footer(record))


def footer(record: Record) -> str:
    coverage = record.modules_coverage or {}
    per_round = record.modules_coverage_per_round or {}
    overhead = record.modules_overhead or {}
    phases = record.modules_phase_samples_s or {}
    parts = []
    for phase in ("forward", "backward"):
        samples = phases.get(phase) or []
        median = statistics.median(samples) if samples else None
        cov = coverage.get(phase)
        text = f"{phase} {_pct(per_round.get(phase))} % of {_ms(median)} ms"
        if cov is not None:
            text += f" (ratio of the medians: {_pct(cov)} %)"
        parts.append(text)
    lines = ["coverage (the leaf modules' sum over the whole phase, within each round, median over rounds): "
             + "; ".join(parts) + ". The rest: the loss, code between modules, autograd's scheduling."]
    if overhead:
        lines.append("instrumentation overhead (breakdown rounds' phase over the ordinary rounds'): "
                     + "; ".join(f"{p} ×{overhead[p]:.2f}" for p in ("forward", "backward") if p in overhead))
    return "\n".join(lines)
