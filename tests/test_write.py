"""One writer for every file: what is at the target is never destroyed, a failed write leaves nothing behind,
and every command says so with exit 2 instead of a traceback."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from results_factory import results_json, standard_run, write_json

from bench import commands as cli
from bench.record.write import OutputError, append_line, check, target, write_text

ROOT = Path(__file__).resolve().parents[1]
DEV_FULL = Path("/dev/full")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp" in p.name)


# -- the rules ----------------------------------------------------------------------------------------------


def test_a_new_file_is_written_whole_with_the_usual_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "out.md"  # missing folders are made
    assert write_text(path, ["a", "b"]) == path.resolve()
    assert path.read_text() == "ab"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert leftovers(path.parent) == []


def test_a_replaced_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_text("old")
    path.chmod(0o640)
    write_text(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.md"
    real.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new"
    dangling = tmp_path / "dangling.md"
    dangling.symlink_to(tmp_path / "made" / "later.md")
    write_text(dangling, "x")
    assert dangling.is_symlink() and (tmp_path / "made" / "later.md").read_text() == "x"


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")
def test_a_device_is_refused_and_left_alone() -> None:
    before = DEV_FULL.stat()
    with pytest.raises(OutputError, match="/dev/full: is a character device; refusing to replace it"):
        write_text(DEV_FULL, "x" * 10)
    with pytest.raises(OutputError, match="character device"):
        append_line(DEV_FULL, "{}")
    after = DEV_FULL.stat()
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_a_folder_or_a_file_as_parent_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a folder, not a file"):
        check(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match=f"its parent {blocker} is a file, not a folder"):
        write_text(blocker / "x" / "out.json", "{}")
    assert blocker.read_text() == "" and leftovers(tmp_path) == []
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="named pipe"):
        target(fifo)


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "report.html"
    path.write_text("old")

    def chunks() -> object:
        yield "half a page"
        raise RuntimeError("the renderer broke")

    with pytest.raises(RuntimeError, match="renderer broke"):
        write_text(path, chunks())  # type: ignore[arg-type]
    assert path.read_text() == "old" and leftovers(tmp_path) == []

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match="report.html: could not be written \\(No space left on device\\)"):
        write_text(path, "new")
    assert path.read_text() == "old" and leftovers(tmp_path) == []


# -- through the commands -------------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    a = write_json(tmp_path / "a.json", results_json(standard_run()))
    b = write_json(tmp_path / "b.json", results_json(standard_run(1)))
    return a, b


def test_compare_refuses_outputs_it_cannot_write_before_reading(pair: tuple[Path, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pair
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [["--html", str(folder)], ["--json", str(a / "verdicts.json")]]
    if DEV_FULL.exists():
        cases.append(["--html", str(DEV_FULL)])
    for extra in cases:
        assert cli.main(["compare", str(a), str(b), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert f"bench compare: {extra[1]}" in err and "Traceback" not in err
    assert folder.is_dir() and list(folder.iterdir()) == [] and leftovers(tmp_path) == []
    if DEV_FULL.exists():
        assert stat.S_ISCHR(DEV_FULL.stat().st_mode)


def test_compare_writes_through_a_symlinked_markdown(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    summary = tmp_path / "summary.md"
    summary.write_text("")
    link = tmp_path / "job-summary.md"
    link.symlink_to(summary)
    assert cli.main(["compare", str(a), str(b), "--markdown", str(link)]) in (0, 1)
    assert link.is_symlink() and summary.read_text().startswith("## archbench")


def test_report_refuses_a_folder(pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(pair[0]), "--html", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err


def test_merge_never_overwrites_one_of_its_inputs(pair: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    a, other = pair
    before = a.read_bytes()
    assert cli.main(["merge", str(a), str(other), "-o", str(a)]) == 2
    assert "is the input" in capsys.readouterr().err
    link = tmp_path / "a-link.json"
    link.symlink_to(a)
    assert cli.main(["merge", str(a), str(other), "-o", str(link)]) == 2  # through a link too
    assert a.read_bytes() == before


@pytest.mark.skipif(not DEV_FULL.exists(), reason="needs /dev/full (Linux)")
def test_pytest_bench_refuses_a_results_path_it_cannot_write(tmp_path: Path) -> None:
    partial = Path("/dev/full.partial.jsonl")
    assert not partial.exists()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q", "--benchmark-json=/dev/full",
         "--bench-case=dogbreed_dsc", "--bench-kind=step", "--bench-rounds=1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output[-3000:]
    assert "/dev/full: is a character device; refusing to replace it" in output
    assert "Traceback" not in output and not partial.exists() and stat.S_ISCHR(DEV_FULL.stat().st_mode)
