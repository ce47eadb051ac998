"""``bench list [GLOB…] [--suite S] [--format table|json]``: every case with its measured static cost
beside the report's own numbers. Exit 2 when nothing matches or a suite is unknown."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import Progress

from bench.measure.cases import CaseCost, case_cost, select
from bench.record.exits import EXIT_OK, EXIT_UNUSABLE
from bench.record.options import add_argparse_option
from bench.render.cases import cases_table
from bench.render.table import make_console


def run(args: argparse.Namespace) -> int:
    try:
        cases = select(args.patterns, args.bench_suite)
    except (KeyError, ValueError) as exc:
        print(f"bench list: {exc.args[0]}", file=sys.stderr)
        return EXIT_UNUSABLE
    if not cases:
        print("bench list: no case matches", file=sys.stderr)
        return EXIT_UNUSABLE
    rows: list[CaseCost] = []
    err = Console(stderr=True)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("counting", total=len(cases))
        for case in cases:
            progress.update(task, description=case.name)
            rows.append(case_cost(case))
            progress.advance(task)
    if args.format == "json":
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        make_console().print(cases_table(rows).to_rich())  # piped or redirected: wide, not squeezed into 80
    return EXIT_OK


def add_parser(sub: Any) -> None:
    p = sub.add_parser("list", help="list the cases with measured params/MACs beside the reports' numbers")
    p.add_argument("patterns", nargs="*", metavar="GLOB", help="case-name globs, e.g. 'dogbreed_*'")
    add_argparse_option(p, "bench_suite", "--suite")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)
