"""``bench doctor``: what this machine can measure, checked before anything is measured.

Reports the interpreter, torch and the CUDA it was built for, whether torch can use CUDA, every visible
device (name, capability, memory, UUID), the NVIDIA driver (NVML) and whether it is new enough for torch's
CUDA, and whether ``torch.compile`` can build CPU kernels (a C++ compiler and Python's headers).
``--require-cuda`` and ``--require-compiler`` exit 2 with one sentence saying what is wrong and what to do;
CI runs both before measuring, so that a runner that cannot measure fails in its first minute rather than
failing every case for half an hour. Otherwise the exit code is 0: the report is information.

The probes are :mod:`bench.measure.probe`'s, the table :mod:`bench.render.doctor`'s.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.text import Text

from bench.measure.probe import Probes, compiler_problem, cuda_problem, diagnose
from bench.record.exits import EXIT_OK, EXIT_UNUSABLE
from bench.render.doctor import doctor_table
from bench.render.table import make_console


@dataclass(frozen=True)
class DoctorOptions:
    require_cuda: bool = False
    require_compiler: bool = False
    as_json: bool = False


def run(options: DoctorOptions, console: Console | None = None, errors: Console | None = None,
        probes: Probes | None = None) -> int:
    """Gather, print, and return 2 when a required capability is missing, else 0."""
    console = console or make_console()
    errors = errors or make_console(sys.stderr)
    probes = probes or Probes()
    report = diagnose(probes)
    cuda, cxx = cuda_problem(report), compiler_problem(report)
    problems = [p for p, required in ((cuda, options.require_cuda), (cxx, options.require_compiler))
                if p is not None and required]
    if options.as_json:
        document = {**report.to_json(), "cuda_problem": cuda, "compiler_problem": cxx, "problems": problems}
        console.file.write(json.dumps(document, indent=2) + "\n")
    else:
        console.print(doctor_table(report))
        # Not required here: worth a line, not an exit code.
        for note in (cuda if not options.require_cuda else None, cxx if not options.require_compiler else None):
            if note is not None:
                console.print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
    for problem in problems:
        errors.print(Text(f"bench doctor: {problem}", style="bold red"), soft_wrap=True)
        if probes.environ.get("GITHUB_ACTIONS") == "true" and not options.as_json:
            # An error annotation puts the sentence on the run's summary page, not only in the log.
            console.file.write(f"::error title=bench doctor::{_escape_workflow_command(problem)}\n")
    return EXIT_UNUSABLE if problems else EXIT_OK


def _escape_workflow_command(text: str) -> str:
    # GitHub's workflow-command data escaping: a raw newline or % would cut or garble the message.
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor", help="check torch, CUDA, the driver and the compiler before measuring; exit 2 if a required one is missing",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("--require-cuda", action="store_true",
                   help="exit 2 unless torch can use CUDA here (CUDA build, driver new enough, a visible GPU)")
    p.add_argument("--require-compiler", action="store_true",
                   help="exit 2 unless torch.compile's CPU backend has a C++ compiler and Python.h")
    p.add_argument("--json", action="store_true", dest="as_json", help="print the report as JSON")
    p.set_defaults(func=lambda args: run(DoctorOptions(args.require_cuda, args.require_compiler, args.as_json)))
