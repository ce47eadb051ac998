"""The ``bench`` command: ``bench list``, ``bench compare``, ``bench report``, ``bench merge``.

Each subcommand lives in the module that does the work and registers itself through an
``add_parser(subparsers)`` function that sets ``func``; this file only wires them together.
Exit codes are the subcommand's; an unexpected crash exits 70 (EX_SOFTWARE), never 1, so that CI can
tell a crash of the tool from a regression.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from bench.present import EXIT_CRASH


def build_parser() -> argparse.ArgumentParser:
    from bench import listing

    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing.add_parser(sub)
    for module_name in ("compare", "report", "merge", "ab"):
        module = _optional_module(module_name)
        if module is not None:
            module.add_parser(sub)
    return parser


def _optional_module(name: str):  # type: ignore[no-untyped-def]
    import importlib

    try:
        return importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bench.{name}":
            return None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception:  # noqa: BLE001 - the tool itself failed: say so, and never exit 1 (that means "regression")
        traceback.print_exc()
        print(f"bench {args.command}: internal error (exit {EXIT_CRASH})", file=sys.stderr)
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
