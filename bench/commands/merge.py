"""``bench merge A.json B.json ... -o OUT.json``: one results file from runs split across machines.

The joining rules are :mod:`bench.record.merge`'s. Exit codes: 0 written; 2 an unusable input, a
benchmark in two inputs, or an output that cannot be written (one of the inputs included: a merge never
replaces what it reads); 3 inputs not comparable, unless ``--allow-incomparable``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from bench.record.exits import EXIT_OK
from bench.record.merge import MergeError, json_chunks, merge_results
from bench.record.results import FAILED_KEY, ResultsError, load_results
from bench.record.write import OutputError, target, write_text
from bench.render.table import make_console


@dataclass(frozen=True)
class MergeOptions:
    inputs: tuple[Path, ...]
    output: Path
    allow_incomparable: bool = False


def check_output(options: MergeOptions) -> None:
    """Refuse an output that cannot be written, or that is one of the inputs (through a link too)."""
    dest = target(options.output)
    for path in options.inputs:
        if dest.exists() and path.exists() and os.path.samefile(dest, path):
            raise OutputError(options.output, f"is the input {path}; write the merged file elsewhere")


def run(options: MergeOptions, console: Console | None = None) -> int:
    """Load every input, merge, write ``options.output``; return the exit code."""
    errors = console or make_console(sys.stderr)
    console = console or make_console()
    try:
        check_output(options)
        inputs = [load_results(path) for path in options.inputs]
        # Usable by construction: every benchmark and the envelope were validated on input, and no
        # name is in two inputs (tests load what was written).
        merged = merge_results(inputs, allow_incomparable=options.allow_incomparable)
        for warning in merged.warnings:
            errors.print(Text(f"bench merge: warning: {warning}", style="bold yellow"))
        write_text(options.output, json_chunks(merged.data))
    except ResultsError as exc:
        errors.print(Text(f"bench merge: unusable input: {exc}", style="bold red"))
        return exc.exit_code
    except (MergeError, OutputError) as exc:
        errors.print(Text(f"bench merge: {exc}", style="bold red"))
        return exc.exit_code
    count = len(merged.data["benchmarks"]) + len(merged.data.get(FAILED_KEY, []))
    console.print(Text(f"wrote {options.output}: {count} benchmarks from {len(inputs)} files"))
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "merge", help="join results files of runs split across machines into one",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("inputs", type=Path, nargs="+", help="results files (pytest --benchmark-json)")
    p.add_argument("-o", "--output", type=Path, required=True, help="merged results file to write")
    p.add_argument(
        "--allow-incomparable", action="store_true", help="merge inputs from different devices or profiles"
    )
    p.set_defaults(func=lambda args: run(MergeOptions(tuple(args.inputs), args.output, args.allow_incomparable)))
