"""The cases a run measures: selected from the registry, and each one's static cost beside the
report's own numbers (what ``bench list`` shows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from suites.registry import Case, registry


def select(patterns: Sequence[str], suites: Sequence[str]) -> list[Case]:
    """Cases by glob and suite; an exact name a suite builds on demand (e.g. any ``resnet50_dcn_abcd``)
    is included too. KeyError for an unknown suite."""
    return registry().select(patterns, suites)


@dataclass(frozen=True)
class CaseCost:
    """One case's static cost at its native input (batch 1) and its report's claims; ``bench list
    --format json`` prints exactly these fields."""

    case: str
    suite: str
    report: str
    input_size: int
    in_channels: int
    num_classes: int
    params_total: int
    params_trainable: int
    macs_forward: int
    unsupported_ops: dict[str, int] = field(default_factory=dict)
    reported_params: float | None = None
    reported_gflops: float | None = None
    reported_mult_adds: int | None = None
    reported_accuracy: dict[str, float] = field(default_factory=dict)
    reported_source: str = ""


def case_cost(case: Case) -> CaseCost:
    """Build the case at its native input and count its parameters and MACs (batch 1)."""
    from bench.measure.flops import static_cost

    cost = static_cost(case.build(), case.input_size, case.in_channels)
    r = case.reported
    return CaseCost(
        case=case.name, suite=case.suite, report=case.report, input_size=case.input_size,
        in_channels=case.in_channels, num_classes=case.num_classes,
        params_total=cost.params_total, params_trainable=cost.params_trainable,
        macs_forward=cost.macs_forward, unsupported_ops=dict(cost.unsupported_ops),
        reported_params=r.params if r.params is not None else r.params_approx,
        reported_gflops=r.gflops, reported_mult_adds=r.mult_adds,
        reported_accuracy=dict(r.accuracy), reported_source=r.source,
    )
