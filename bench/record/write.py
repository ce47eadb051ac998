"""The one writer of every file archbench writes: results JSON, the partial JSON lines, Markdown, HTML,
merged files and ``bench ab``'s outputs.

The same rules for every output, so that no command can destroy what is already there:

* The target must be absent or a regular file. A directory, a device (``/dev/full``), a FIFO or a
  socket is refused with :class:`OutputError` (exit 2) before anything is written: a rename over it
  would replace it.
* A symbolic link is written *through*: the file it points to is replaced and the link stays a link.
* A file is written whole or not at all: into a temporary file in the target's folder, flushed and
  synced, then renamed over the target. On any failure (a full disk, a render that raises) the
  temporary file is removed and the target is as it was.
* Missing parent folders are created; a parent that is a file is refused, naming it.
* A file that is replaced keeps its permission bits; a new one gets the usual ``0666 & ~umask``.
* :func:`append_line` adds one line to a file and syncs it, for records appended while a run goes on
  (a run that is killed keeps every line written).

Commands call :func:`check` on every output path before they start work, so that a bad path is a
usage error in the first second, not after an hour of measuring.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bench.record.exits import EXIT_UNUSABLE

__all__ = ["OutputError", "append_line", "check", "target", "write_text"]


class OutputError(Exception):
    """An output cannot be written where asked; the message names the path and why. Exit code 2."""

    exit_code = EXIT_UNUSABLE

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def target(path: str | os.PathLike[str]) -> Path:
    """The file that writing ``path`` replaces or creates: ``path`` itself, or where its symbolic
    link(s) lead. Raises :class:`OutputError` when that is not a regular file (or absent), or when a
    parent folder is in fact a file."""
    given = Path(path)
    resolved = Path(os.path.realpath(given))
    try:
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        _check_parents(given, resolved.parent)
        return resolved
    except NotADirectoryError:
        _check_parents(given, resolved.parent)
        raise OutputError(given, "a parent of it is not a folder") from None
    except OSError as exc:  # a loop of links, no permission to look
        raise OutputError(given, f"cannot be written ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise OutputError(given, "is a folder, not a file; give a file name")
    if not stat.S_ISREG(mode):
        raise OutputError(given, f"is {_kind(mode)}; refusing to replace it with a file")
    return resolved


def _check_parents(given: Path, folder: Path) -> None:
    """The nearest existing ancestor of ``folder`` must be a folder (the rest is created on write)."""
    for ancestor in (folder, *folder.parents):
        try:
            mode = os.stat(ancestor).st_mode
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue  # an ancestor further up is a file: found on a later step
        except OSError as exc:
            raise OutputError(given, f"cannot look at {ancestor} ({exc.strerror or exc})") from None
        if not stat.S_ISDIR(mode):
            raise OutputError(given, f"its parent {ancestor} is a file, not a folder")
        return


def check(*paths: str | os.PathLike[str] | None) -> None:
    """Refuse, before any work, every output in ``paths`` that could not be written (``None`` skipped)."""
    for path in paths:
        if path is not None:
            target(path)


def _mkdirs(given: Path, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(given, f"cannot create the folder {folder} ({exc.strerror or exc})") from None


def _new_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text(path: str | os.PathLike[str], text: str | Iterable[str]) -> Path:
    """Write ``text`` (or its chunks, in order, as a generator makes them) to ``path`` by the rules in the
    module docstring; return the file written (the link's target for a link). Raises
    :class:`OutputError` naming ``path``; an exception from the chunks themselves propagates, and in
    both cases nothing is left behind and the old file stands."""
    given = Path(path)
    dest = target(given)
    _mkdirs(given, dest.parent)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise OutputError(given, f"cannot write in {dest.parent} ({exc.strerror or exc})") from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if isinstance(text, str):
                fh.write(text)
            else:
                for chunk in text:
                    fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            mode = stat.S_IMODE(os.stat(dest).st_mode)
        except FileNotFoundError:
            mode = _new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise OutputError(given, f"could not be written ({exc.strerror or exc})") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return dest


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append ``line`` and a newline to ``path`` (created if absent) and sync it to disk."""
    given = Path(path)
    dest = target(given)
    _mkdirs(given, dest.parent)
    try:
        with dest.open("a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise OutputError(given, f"could not be appended to ({exc.strerror or exc})") from None
