"""The ``bench`` command: ``bench list``, ``compare``, ``report``, ``merge``, ``ab``, ``profile`` and ``doctor``.

Each subcommand is a module of this package (``list`` is ``listing``, ``profile`` is ``profile``) that
registers itself through an ``add_parser(subparsers)`` function setting ``func``, and calls the library
(:mod:`bench.measure`, :mod:`bench.judge`, :mod:`bench.render`) to do the work; this file only wires them
together.
Exit codes are the subcommand's; an unexpected crash exits 70 (EX_SOFTWARE), never 1, so that CI can
tell a crash of the tool from a regression.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from bench.record.exits import EXIT_CRASH, EXIT_INTERRUPTED, EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    # Imported plainly: a subcommand whose module fails to import is a broken tool and must say so,
    # not vanish from the help. Imported here rather than at the top so that importing bench.commands
    # stays cheap.
    from bench.commands import ab, compare, doctor, listing, merge, profile, report

    parser = argparse.ArgumentParser(prog="bench", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (listing, compare, report, merge, ab, profile, doctor):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception:  # noqa: BLE001 - the tool itself failed: say so, and never exit 1 (that means "regression")
        traceback.print_exc()
        print(f"bench {args.command}: internal error (exit {EXIT_CRASH})", file=sys.stderr)
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
