"""``bench compare BASE HEAD``: what got slower, bigger or less accurate between two runs.

Arguments → :class:`~bench.judge.verdicts.CompareSettings` (how to judge) and :class:`OutputOptions` (what
to write) → :func:`~bench.judge.verdicts.compare_runs` → what to say (:mod:`bench.render.comparison`) → one
renderer per format (:mod:`bench.render.terminal`, ``markdown``, ``json_report``, ``html_report``) → the
files, through :mod:`bench.record.write`. ``bench ab`` ends in :func:`run` too, with the same options
(:func:`add_judging_arguments`).

Exit codes (:mod:`bench.record.exits`): 0 no regression; 1 a regression or a newly failing case; 2
unusable input or an output that cannot be written; 3 runs not comparable (different device, profile,
modes, or initial weights for a case: docs/weights.md) unless ``--allow-incomparable``. A crash of the
tool exits 70 (:mod:`bench.commands`), never 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from bench.judge import module_diff as md
from bench.judge.verdicts import CompareSettings, Comparison, compare_runs, parse_threshold
from bench.record.options import non_negative, positive_int
from bench.record.results import ResultsError, load_results
from bench.record.write import OutputError, check, write_text
from bench.render import html_report, json_report, markdown, terminal
from bench.render.charts import COSTS
from bench.render.table import make_console


@dataclass(frozen=True)
class OutputOptions:
    """What ``bench compare`` writes besides the terminal report."""

    show_all: bool = False
    markdown: Path | None = None
    html: Path | None = None
    json: Path | None = None
    cost: str = "macs"
    #: Modules listed per phase in "where it moved" (``--modules-top``).
    modules_top: int = md.DEFAULT_TOP

    @property
    def files(self) -> tuple[Path | None, ...]:
        return (self.markdown, self.json, self.html)


def write_outputs(c: Comparison, output: OutputOptions, console: Console | None = None) -> None:
    """Write the files ``output`` asks for, saying so on ``console``; :class:`OutputError` when one
    cannot be written (the files written before it stay)."""
    outputs: list[tuple[Path | None, Callable[[], Any]]] = [
        (output.markdown, lambda: markdown.comparison(c, modules_top=output.modules_top)),
        (output.json, lambda: json_report.comparison_chunks(c)),
        (output.html, lambda: html_report.comparison(c, cost=output.cost, modules_top=output.modules_top)),
    ]
    for path, render in outputs:
        if path is not None:
            write_text(path, render())
            if console is not None:
                console.print(Text(f"wrote {path}", style="dim"))


def add_judging_arguments(p: argparse.ArgumentParser) -> None:
    """How to judge and what to write: the options of ``bench compare`` that ``bench ab`` shares."""
    p.add_argument(
        "--threshold", action="append", default=[], metavar="METRIC=VALUE",
        help="override a metric's threshold (repeatable): relative for times and memory "
        "(time_forward_s=0.15), a fraction for accuracy (accuracy_test=0.05)",
    )
    p.add_argument(
        "--allow-incomparable", action="store_true",
        help="compare runs from different devices or profiles anyway (loudly flagged)",
    )
    p.add_argument(
        "--noise-z", type=non_negative, metavar="Z",
        help="time moves within exp(Z·σ)-1 of the noise σ between the runs are inconclusive "
        "(default 7; 0 trusts every move beyond the relative threshold; not used for paired runs)",
    )
    p.add_argument("--all", dest="show_all", action="store_true",
                   help="list every benchmark and metric in the terminal, unchanged ones too")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown summary (CI job summary, PR comment)")
    p.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report with charts")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every verdict as JSON")
    p.add_argument("--cost", choices=sorted(COSTS), default="macs", help="initial x axis of the accuracy chart")
    p.add_argument("--modules-top", type=positive_int, default=md.DEFAULT_TOP, metavar="N",
                   help=f"modules listed per phase where a case with a breakdown moved (default {md.DEFAULT_TOP})")


def judging_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[CompareSettings, OutputOptions]:
    """The settings and outputs :func:`add_judging_arguments` stands for; a bad threshold is a usage
    error (exit 2)."""
    thresholds: dict[str, float] = {}
    for text in args.threshold:
        try:
            key, value = parse_threshold(text)
        except ValueError as exc:
            parser.error(str(exc))  # exits 2: a usage error, like any other unusable input
        thresholds[key] = value
    settings = CompareSettings(thresholds=thresholds, allow_incomparable=args.allow_incomparable,
                               noise_z=args.noise_z)
    output = OutputOptions(show_all=args.show_all, markdown=args.markdown, html=args.html, json=args.json,
                           cost=args.cost, modules_top=args.modules_top)
    return settings, output


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare two results files; exit 1 on a regression",
        description=(__doc__ or "").split("\n\n")[0] + " Exit 0 clean, 1 regression or newly failing case, "
        "2 unusable input, 3 runs not comparable.",
    )
    p.add_argument("base", type=Path, help="results of the baseline (pytest --benchmark-json)")
    p.add_argument("head", type=Path, help="results to check against the baseline")
    add_judging_arguments(p)
    p.set_defaults(func=lambda args: run(args.base, args.head, *judging_from(args, p)))


def run(
    base_path: Path,
    head_path: Path,
    settings: CompareSettings | None = None,
    output: OutputOptions | None = None,
    console: Console | None = None,
) -> int:
    """Load, compare, render, write the requested files; return the exit code. Errors go to stderr
    unless a console is given (tests pass one and read everything from it)."""
    settings = settings or CompareSettings()
    output = output or OutputOptions()
    errors = console or make_console(sys.stderr)
    console = console or make_console()
    try:
        check(*output.files)  # before reading anything: a path that cannot be written is a usage error
    except OutputError as exc:
        errors.print(Text(f"bench compare: {exc}", style="bold red"))
        return exc.exit_code
    try:
        base = load_results(base_path)
        head = load_results(head_path)
    except ResultsError as exc:
        errors.print(Text(f"bench compare: unusable input: {exc}", style="bold red"))
        return exc.exit_code
    comparison = compare_runs(base, head, settings)
    console.print(terminal.comparison(comparison, show_all=output.show_all, modules_top=output.modules_top))
    if comparison.blocked:
        errors.print(Text(
            f"bench compare: runs not comparable: {'; '.join(comparison.incomparable)}. "
            "Pass --allow-incomparable to compare anyway.",
            style="bold red",
        ))
    try:
        write_outputs(comparison, output, console)
    except OutputError as exc:
        errors.print(Text(f"bench compare: {exc}", style="bold red"))
        return exc.exit_code
    return comparison.exit_code
