"""``bench report RESULTS [--html FILE]``: one run's measured numbers, and a page with its charts.

The terminal gets the measured numbers; ``--html`` writes the page (:mod:`bench.render.html_report`). Exit
codes: 0 written, 2 unusable input or an output that cannot be written.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from bench.record.exits import EXIT_OK
from bench.record.results import ResultsError, load_results
from bench.record.write import OutputError, check, write_text
from bench.render import html_report, terminal
from bench.render.charts import COSTS
from bench.render.table import make_console


@dataclass(frozen=True)
class ReportOptions:
    results: Path
    html: Path | None = None
    cost: str = "macs"


def run(options: ReportOptions, console: Console | None = None) -> int:
    """Load, print, write the page; return the exit code. Errors go to stderr unless a console is given."""
    errors = console or make_console(sys.stderr)
    console = console or make_console()
    try:
        check(options.html)
        results = load_results(options.results)
        console.print(terminal.report(results))
        if options.html is not None:
            write_text(options.html, html_report.report(results, options.cost))
            console.print(Text(f"wrote {options.html}", style="dim"))
    except ResultsError as exc:
        errors.print(Text(f"bench report: unusable input: {exc}", style="bold red"))
        return exc.exit_code
    except OutputError as exc:
        errors.print(Text(f"bench report: {exc}", style="bold red"))
        return exc.exit_code
    return EXIT_OK


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report", help="tables and an HTML report (charts) for one results file",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("results", type=Path, help="results file (pytest --benchmark-json)")
    p.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report with charts")
    p.add_argument("--cost", choices=sorted(COSTS), default="macs", help="initial x axis of the accuracy chart")
    p.set_defaults(func=lambda args: run(ReportOptions(results=args.results, html=args.html, cost=args.cost)))
