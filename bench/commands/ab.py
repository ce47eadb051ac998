"""``bench ab BASE HEAD``: base and head measured turn by turn on this machine, then judged pair by pair.

The measuring is :mod:`bench.measure.ab`'s (sides, workers, the ABBA schedule, the files); the judging
and the output are ``bench compare``'s (:func:`bench.commands.compare.run`), with its options and exit
codes. Every ``pytest bench/`` option works here too, spelled the same; ``--bench-fail`` may name a side
(``head/CASE:crash``). Exit codes: those of ``bench compare``; 2 when a side cannot be used or an output
cannot be written (before anything is measured); 130 when interrupted (what was measured is written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bench.commands.compare import OutputOptions, add_judging_arguments, judging_from
from bench.commands.compare import run as compare
from bench.judge.verdicts import CompareSettings
from bench.measure.ab import AbError, AbSettings
from bench.measure.ab import run as measure
from bench.record.exits import EXIT_INTERRUPTED, EXIT_UNUSABLE
from bench.record.options import OPTIONS, RunOptions, add_argparse_options, positive_int
from bench.record.write import OutputError

#: ``pytest bench/`` options that ``bench ab`` does not take: it writes a partial file per side itself.
NOT_HERE = ("bench_partial",)


def run(settings: AbSettings, judging: CompareSettings | None = None, output: OutputOptions | None = None,
        repo: Path | None = None) -> int:
    """Measure both sides, then judge them as ``bench compare`` does; return its exit code."""
    try:
        paths = measure(settings, repo)
    except (AbError, OutputError) as exc:
        print(f"bench ab: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return compare(paths["base"], paths["head"], judging, output)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ab", help="measure base and head turn by turn on this machine and compare them; exit 1 on a regression",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("base", help="a checkout directory or a git revision (e.g. main, HEAD~1)")
    p.add_argument("head", help="a checkout directory or a git revision (e.g. HEAD, .)")
    add_argparse_options(p, exclude=NOT_HERE)
    p.add_argument("--base-python", metavar="PY", help="interpreter (or venv's python) for the base side")
    p.add_argument("--head-python", metavar="PY", help="interpreter (or venv's python) for the head side")
    p.add_argument("-o", "--output", type=Path, default=Path("ab-out"), metavar="DIR",
                   help="where base.json, head.json, partial files and worker logs go (default: ab-out/)")
    p.add_argument("--workers", type=positive_int, default=3, metavar="N",
                   help="worker processes per side for the timing rounds (default 3); round r runs on worker "
                        "r mod N, and a verdict needs every worker pair to agree")
    p.add_argument("--case-timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="a side that takes longer over one case is killed and the case recorded as error")
    add_judging_arguments(p)
    p.set_defaults(func=lambda args: _cli(args, p))


def _cli(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    judging, output = judging_from(args, parser)
    settings = AbSettings(
        sides={"base": args.base, "head": args.head},
        options=RunOptions.from_values({dest: getattr(args, dest, None) for dest in OPTIONS}),
        output=args.output,
        pythons={"base": args.base_python, "head": args.head_python},
        case_timeout=args.case_timeout,
        workers=args.workers,
    )
    return run(settings, judging, output)
