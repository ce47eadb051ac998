"""``bench list``: every case with its measured static cost beside the report's own numbers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.metrics import METRICS
from bench.options import add_argparse_option
from suites.registry import Case, get_case, registry


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
    """Cases by glob and suite; an exact ``resnet50_dcn_abcd`` outside the registry is built too."""
    cases = registry().select(patterns, suites)
    for name in patterns:
        if name.startswith("resnet50_dcn_") and not any(c in name for c in "*?[") and name not in registry():
            cases.append(get_case(name))
    return cases


def table(rows: Sequence[CaseRow]) -> Table:
    params, macs = METRICS["params_total"], METRICS["macs_forward"]
    t = Table(title="archbench cases (static cost at native input, batch 1)", header_style="bold")
    t.add_column("case", no_wrap=True)
    t.add_column("suite")
    t.add_column("input", justify="right")
    t.add_column("classes", justify="right")
    t.add_column(f"params [{params.unit}]", justify="right")
    t.add_column(f"trainable [{params.unit}]", justify="right")
    t.add_column("report params", justify="right")
    t.add_column(f"{macs.label} [{macs.unit}]", justify="right")
    t.add_column("report (G)FLOPs / mult-adds", justify="right")
    t.add_column("uncounted ops")
    for row in rows:
        if row.reported_mult_adds is not None:
            claimed = f"{row.reported_mult_adds / 1e6:,.0f}M MA"
        elif row.reported_gflops is not None:
            claimed = f"{row.reported_gflops:g}"
        else:
            claimed = "—"
        reported = row.reported_params
        t.add_row(
            row.case, row.suite, f"{row.in_channels}×{row.input_size}²", str(row.num_classes),
            f"{row.params_total * params.scale:,.3f}", f"{row.params_trainable * params.scale:,.3f}",
            "—" if reported is None else (f"{reported:,.0f}" if float(reported).is_integer() else f"{reported:g}"),
            f"{row.macs_forward * macs.scale:,.3f}", claimed,
            ", ".join(f"{k}×{v}" for k, v in row.unsupported_ops.items()) or "",
        )
    return t


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
        out = Console()
        if not out.is_terminal:  # piped or redirected: do not squeeze ten columns into 80
            out = Console(width=200)
        out.print(table(rows))
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
