"""The few NVML conventions every caller needs, once: which exceptions NVML raises, how its strings
come back, and an init/shutdown session that degrades to a reason instead of raising.

pynvml (nvidia-ml-py) raises subclasses of ``NVMLError``, one per ``NVML_ERROR_*`` code; nvidia-ml-py
returned bytes for strings before 11.515 and str since. Modules passed in may be fakes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def error_type(nvml: Any) -> type[BaseException] | tuple[()]:
    """The module's ``NVMLError``; a module without one catches nothing (the empty tuple)."""
    error = getattr(nvml, "NVMLError", None)
    return error if isinstance(error, type) and issubclass(error, BaseException) else ()


def reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@contextlib.contextmanager
def session(nvml: Any) -> Iterator[tuple[Any, BaseException | None]]:
    """``nvmlInit`` / ``nvmlShutdown`` around a block; yields ``(nvml, None)``, or ``(None, error)`` when
    NVML cannot be initialised (no driver, no library): each caller words the reason its own way."""
    try:
        nvml.nvmlInit()
    except error_type(nvml) as exc:
        yield None, exc
        return
    try:
        yield nvml, None
    finally:
        with contextlib.suppress(*_as_tuple(error_type(nvml))):
            # nothing to undo when shutdown fails; what the block read must not become an error here
            nvml.nvmlShutdown()


def _as_tuple(error: type[BaseException] | tuple[()]) -> tuple[type[BaseException], ...]:
    return error if isinstance(error, tuple) else (error,)
