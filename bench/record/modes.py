"""The execution modes a run asks for: ``--bench-precision``, ``--bench-memory-format``, ``--bench-compile``
(docs/modes.md).

This module names them and holds the typed value, :class:`Modes`, which every record carries; it imports
no torch. :mod:`bench.measure.executor` carries the modes out, and a device says which it can run
(:meth:`bench.measure.devices.Device.check_modes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Precision = Literal["fp32", "tf32", "bf16", "fp16"]
MemoryFormat = Literal["contiguous", "channels_last"]
CompileMode = Literal["none", "default", "reduce-overhead", "max-autotune"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
MEMORY_FORMATS: tuple[str, ...] = get_args(MemoryFormat)
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)

#: The option that sets each mode, for messages.
FLAGS = {"precision": "--bench-precision", "memory_format": "--bench-memory-format", "compile": "--bench-compile"}


class ModeError(ValueError):
    """A mode that is unknown or that the device cannot run; the message names the option."""


class ModeUnavailable(ModeError):
    """A known mode that this device cannot run (fp16 on the CPU)."""


@dataclass(frozen=True)
class Modes:
    """The execution modes of a run; the defaults are what archbench measured before modes existed."""

    precision: Precision = "fp32"
    memory_format: MemoryFormat = "contiguous"
    compile: CompileMode = "none"

    def __post_init__(self) -> None:
        for name, choices in (("precision", PRECISIONS), ("memory_format", MEMORY_FORMATS),
                              ("compile", COMPILE_MODES)):
            value = getattr(self, name)
            if value not in choices:
                raise ModeError(f"{FLAGS[name]} {value!r}: choose from {', '.join(choices)}")

    def fields(self) -> dict[str, str]:
        """The record fields (and ``machine_info.archbench`` keys) that name these modes."""
        return {"precision": self.precision, "memory_format": self.memory_format, "compile": self.compile}
