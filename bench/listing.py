"""``bench list``: every case with its measured static cost beside the report's own numbers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import Progress

from bench.metrics import METRICS
from bench.options import add_argparse_option
from bench.present import Column, FittedTable, TableSpec, make_console

if TYPE_CHECKING:  # suites imports torch (0.9 s, 700 MB): only `bench list` itself needs it
    from suites.registry import Case


@dataclass(frozen=True)
class CaseRow:
    """One case's static cost; the JSON output is exactly these fields."""

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


def measure(case: Case) -> CaseRow:
    """Build the case at its native input and count its parameters and MACs (batch 1)."""
    from bench.flops import static_cost

    cost = static_cost(case.build(), case.input_size, case.in_channels)
    r = case.reported
    return CaseRow(
        case=case.name, suite=case.suite, report=case.report, input_size=case.input_size,
        in_channels=case.in_channels, num_classes=case.num_classes,
        params_total=cost.params_total, params_trainable=cost.params_trainable,
        macs_forward=cost.macs_forward, unsupported_ops=dict(cost.unsupported_ops),
        reported_params=r.params if r.params is not None else r.params_approx,
        reported_gflops=r.gflops, reported_mult_adds=r.mult_adds,
        reported_accuracy=dict(r.accuracy), reported_source=r.source,
    )


def select(patterns: Sequence[str], suites: Sequence[str]) -> list[Case]:
    """Cases by glob and suite; an exact name a suite builds on demand (e.g. any ``resnet50_dcn_abcd``)
    is included too."""
    from suites.registry import registry

    return registry().select(patterns, suites)


def _claimed(row: CaseRow) -> str:
    if row.reported_mult_adds is not None:
        return f"{row.reported_mult_adds / 1e6:,.0f}M MA"
    if row.reported_gflops is not None:
        return f"{row.reported_gflops:g}"
    return "—"


def _reported_params(row: CaseRow) -> str:
    reported = row.reported_params
    if reported is None:
        return "—"
    return f"{reported:,.0f}" if float(reported).is_integer() else f"{reported:g}"


def table_spec(rows: Sequence[CaseRow]) -> TableSpec[CaseRow]:
    """The cases with their measured static cost beside the reports' claims."""
    params, macs = METRICS["params_total"], METRICS["macs_forward"]
    columns: list[Column[CaseRow]] = [
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


def table(rows: Sequence[CaseRow]) -> FittedTable[CaseRow]:
    """:func:`table_spec` as a renderable that fits the console it is printed on."""
    return table_spec(rows).to_rich()


def run(args: argparse.Namespace) -> int:
    try:
        cases = select(args.bench_case, args.bench_suite)
    except (KeyError, ValueError) as exc:
        print(f"bench list: {exc.args[0]}", file=sys.stderr)
        return 2
    if not cases:
        print("bench list: no case matches", file=sys.stderr)
        return 2
    rows: list[CaseRow] = []
    err = Console(stderr=True)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("counting", total=len(cases))
        for case in cases:
            progress.update(task, description=case.name)
            rows.append(measure(case))
            progress.advance(task)
    if args.format == "json":
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        make_console().print(table(rows))  # piped or redirected: wide, not ten columns squeezed into 80
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="list the cases with measured params/MACs beside the reports' numbers")
    p.add_argument("patterns", nargs="*", metavar="GLOB", help="case-name globs, e.g. 'dogbreed_*'")
    add_argparse_option(p, "bench_suite", "--suite")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=lambda a: run(_merge_patterns(a)))


def _merge_patterns(args: argparse.Namespace) -> argparse.Namespace:
    args.bench_case = list(args.patterns)
    return args
