"""bench.commands: every subcommand is wired, and a broken one fails loudly instead of disappearing."""

from __future__ import annotations

import sys

import pytest

from bench import commands as cli


def test_every_subcommand_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("list", "compare", "report", "merge", "ab", "doctor"):
        assert f"    {command} " in out, command


def test_a_subcommand_that_fails_to_import_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.commands

    # What a missing dependency or a syntax error in bench/commands/merge.py looks like to the import system.
    monkeypatch.delattr(bench.commands, "merge", raising=False)
    monkeypatch.setitem(sys.modules, "bench.commands.merge", None)
    with pytest.raises(ImportError, match="bench.commands.merge"):
        cli.build_parser()
