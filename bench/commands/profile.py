"""``bench profile CASE``: one case's per-module breakdown as a table (docs/modules.md).

A driver of the measurement session (:mod:`bench.measure.session`), as ``pytest bench/`` is: the same
stages with ``--bench-modules`` on, except that each breakdown round comes right after an ordinary round
instead of after all of them, so that the instrumentation's overhead compares rounds that saw the same
machine. Prints, per module, forward and backward time, their share of the phase, MACs, parameters and
activation memory, with what the leaf modules cover of each phase and what the instrumentation cost
(:mod:`bench.render.breakdown`); ``--json`` prints the whole step record instead. Exit 2 for an unknown
case or a bad option, 1 when the case failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench.record.exits import EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE
from bench.record.options import OPTIONS, RunOptions, add_argparse_option, positive_int
from bench.render.breakdown import breakdown_table
from bench.render.table import make_console

#: The run options ``bench profile`` takes, with the short spellings it has always had.
SHORT = {"bench_device": "--device", "bench_profile": "--profile", "bench_batch_size": "--batch-size",
         "bench_threads": "--threads", "bench_seed": "--seed"}
TAKEN = (*SHORT, "bench_malloc", "bench_warmup", "bench_warmup_time", "bench_precision", "bench_memory_format",
         "bench_compile", "bench_fail")


def options_of(args: argparse.Namespace) -> RunOptions:
    """The run's options: the case alone, step only, with the breakdown at ``--depth`` over ``--rounds``."""
    values: dict[str, Any] = {dest: getattr(args, dest, None) for dest in OPTIONS}
    values.update(bench_case=[args.case], bench_kind="step", bench_modules=True, bench_modules_depth=args.depth,
                  bench_rounds=args.rounds)
    return RunOptions.from_values(values)


def run(args: argparse.Namespace) -> int:
    from bench.measure.session import Session
    from suites.registry import get_case

    try:
        case = get_case(args.case)
        session = Session.open(options_of(args))
    except (KeyError, ValueError) as exc:  # an unknown case, an OptionError
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        print(f"bench profile: {message}", file=sys.stderr)
        return EXIT_UNUSABLE
    record = session.measure_step(case, interleave_modules=True)
    if args.json:
        print(json.dumps(record.to_extra_info(), indent=2, allow_nan=True))
    elif record.modules is not None:
        make_console().print(breakdown_table(record).to_rich())
    if record.status != "ok":
        print(f"bench profile: {case.name}: status {record.status}: {record.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def add_parser(sub: Any) -> None:
    p = sub.add_parser("profile", help="one case's forward/backward time, MACs, params and activation memory per module",
                       description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("case", help="the case's name (see bench list)")
    depth = OPTIONS["bench_modules_depth"]
    p.add_argument("--depth", type=positive_int, default=depth.default, metavar="N",
                   help=f"as --bench-modules-depth (default {depth.default}): {depth.help.split(': ', 1)[1]}")
    p.add_argument("--rounds", type=positive_int, default=5, metavar="N",
                   help="rounds, each an ordinary one and then a breakdown round (default 5)")
    for dest in TAKEN:
        add_argparse_option(p, dest, *((SHORT[dest],) if dest in SHORT else ()))
    p.add_argument("--json", action="store_true", help="print the step record (its breakdown included) as JSON")
    p.set_defaults(func=run)
