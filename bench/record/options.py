"""What a run is asked to measure, and how hard: the ``--bench-*`` options, defined once, and the typed
:class:`RunOptions` they make.

Each option is one :class:`Option` row of :data:`OPTIONS`: its flag, help, parser, default and the
:class:`RunOptions` field it sets. :func:`add_pytest_options` and :func:`add_argparse_options` turn the
rows into options of ``pytest bench/`` and of ``bench ab`` / ``bench profile`` with the same name, help,
type and default, so a value is refused the same way everywhere: by its parser, while the command line is
read (pytest exits 4, argparse 2), naming the option, the value and what is accepted. What only the
machine can tell (is there a CUDA device, are the weights and the dataset there, does a case match) is
checked by :func:`bench.measure.session.check` before any case is built.

:class:`RunOptions` is built once per run (:meth:`RunOptions.from_values`) and passed, frozen, to the
measurement session, to ``bench ab``'s workers (:meth:`RunOptions.to_wire` / :meth:`RunOptions.from_wire`)
and to the trainer. This module imports no torch.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

from bench.record.modes import (
    COMPILE_MODES,
    MEMORY_FORMATS,
    PRECISIONS,
    CompileMode,
    MemoryFormat,
    Modes,
    Precision,
)
from bench.record.profiles import PROFILES

Kind = Literal["step", "train", "both"]
KINDS: tuple[str, ...] = get_args(Kind)
MallocMode = Literal["steady", "system"]
MALLOC_MODES: tuple[str, ...] = get_args(MallocMode)
#: ``--bench-fail`` kinds: what each forces, and when (the module docstring of bench.measure.session).
FailKind = Literal["error", "oom", "interrupt", "modules", "crash", "hang"]
FAIL_KINDS: tuple[str, ...] = get_args(FailKind)
#: The sides of ``bench ab``, which a ``--bench-fail`` spec may name.
SIDES: tuple[str, ...] = ("base", "head")


# -- parsers: text -> value, or argparse.ArgumentTypeError saying what is accepted -------------------------
# argparse (and pytest, which parses with it) prefixes the message with "argument --flag:", so every
# refusal names the option, the value and what would have been accepted.


def _whole(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= {minimum}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1 (batch size, rounds, epochs, threads, depth)."""
    return _whole(text, 1)


def count(text: str) -> int:
    """A whole number of at least 0 (warm-up rounds)."""
    return _whole(text, 0)


def seconds(text: str) -> float:
    """A finite number of seconds, at least 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds >= 0")
    return value


def non_negative(text: str) -> float:
    """A finite number, at least 0 (a z-score, a threshold)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number >= 0")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None


def device_name(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``: the spelling only; whether the machine has it is checked later."""
    kind, colon, index = text.partition(":")
    if (kind == "cpu" and not colon) or (kind == "cuda" and (not colon or index.isdigit())):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected cpu, cuda or cuda:N (N = 0, 1, ...)")


def parse_seeds(text: str) -> int | tuple[int, ...]:
    """``--bench-seeds``: a count (``"3"``) or a comma-separated list of distinct seeds (``"0,5,9"``)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N or a list such as 0,1,2") from None
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: the count must be at least 1")
        return values[0]
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: a seed is listed twice")
    return tuple(values)


@dataclass(frozen=True)
class FailSpec:
    """``--bench-fail [SIDE/]CASE[:KIND]``: a failure forced in a case, to test the harness itself.
    ``side`` (``base`` or ``head``) only under ``bench ab``; ``None`` means every side."""

    case: str
    kind: FailKind = "error"
    side: str | None = None

    def __str__(self) -> str:
        return f"{self.side + '/' if self.side else ''}{self.case}:{self.kind}"


def parse_fail(text: str) -> FailSpec:
    side, _, rest = text.rpartition("/")
    case, _, kind = rest.partition(":")
    kind = kind or "error"
    if side and side not in SIDES:
        raise argparse.ArgumentTypeError(f"{text!r}: the side must be base or head")
    if kind not in FAIL_KINDS:
        raise argparse.ArgumentTypeError(f"{text!r}: the kind must be one of {', '.join(FAIL_KINDS)}")
    if not case:
        raise argparse.ArgumentTypeError(f"{text!r}: no case named")
    return FailSpec(case, cast(FailKind, kind), side or None)


def seed_list(first: int, seeds: int | Sequence[int] | None) -> list[int]:
    """The seeds to train under: ``first`` alone, ``first .. first+N-1`` for a count, or the list."""
    if seeds is None:
        return [first]
    if isinstance(seeds, int):
        return [first + i for i in range(seeds)]
    return list(seeds)


# -- the table -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One ``--bench-*`` option: the flag, what it sets in :class:`RunOptions` and how its text is read."""

    flag: str
    #: The :class:`RunOptions` field it sets.
    field: str
    help: str
    parse: Callable[[str], Any] | None = None
    default: Any = None
    choices: Sequence[str] | None = None
    multiple: bool = False
    metavar: str | None = None
    #: An on/off option without a value (``store_true``; default off).
    switch: bool = False

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def kwargs(self) -> dict[str, Any]:
        if self.switch:
            return {"help": self.help, "default": False, "dest": self.dest, "action": "store_true"}
        kw: dict[str, Any] = {"help": self.help, "default": self.default, "dest": self.dest}
        if self.multiple:
            kw.update(action="append", default=[] if self.default is None else list(self.default))
        if self.parse is not None:
            kw["type"] = self.parse
        if self.choices is not None:
            kw["choices"] = list(self.choices)
        if self.metavar:
            kw["metavar"] = self.metavar
        return kw

    def read(self, value: Any) -> Any:
        """A value from the wire (JSON) or a caller: text goes through the parser, as on the command line."""
        if value is None:
            return [] if self.multiple else None
        if self.multiple:
            return [self._one(v) for v in value]
        return self._one(value)

    def _one(self, value: Any) -> Any:
        if self.switch:
            return bool(value)
        text = value if isinstance(value, str) else (",".join(map(str, value)) if isinstance(value, (list, tuple))
                                                     else str(value))
        try:
            parsed = self.parse(text) if self.parse is not None else text
        except argparse.ArgumentTypeError as exc:
            raise OptionError(self.flag, f"{exc}") from None
        if self.choices is not None and parsed not in self.choices:
            raise OptionError(self.flag, f"{text!r}: choose from {', '.join(self.choices)}")
        return parsed


class OptionError(ValueError):
    """An option's value cannot be used; the message names the option, the value and what is accepted."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag} {message}" if not message.startswith(flag) else message)
        self.flag = flag


OPTIONS: dict[str, Option] = {
    o.dest: o
    for o in (
        Option("--bench-case", "cases", "only cases matching this glob (repeatable), e.g. 'resnet50_dcn_*'",
               multiple=True, metavar="GLOB"),
        Option("--bench-suite", "suites", "only cases of this suite (repeatable): resnet50_dcn, dogbreed, dynconv, "
               "flowers", multiple=True, metavar="SUITE"),
        Option("--bench-profile", "profile", "measurement profile; default: full with CUDA, smoke without",
               choices=sorted(PROFILES)),
        Option("--bench-device", "device", "cpu, cuda or cuda:N; default: cuda when available", device_name,
               metavar="DEVICE"),
        Option("--bench-batch-size", "batch_size", "override the profile's timing batch size", positive_int,
               metavar="N"),
        Option("--bench-rounds", "rounds", "override the profile's timed rounds (bench ab: paired rounds per "
               "case; default there the profile's paired_rounds)", positive_int, metavar="N"),
        Option("--bench-warmup", "warmup", "override the profile's warm-up rounds", count, metavar="N"),
        Option("--bench-warmup-time", "warmup_time", "override the profile's minimum warm-up time: warm-up runs "
               "until both the rounds and this many seconds are reached", seconds, metavar="SECONDS"),
        Option("--bench-precision", "precision", "fp32 (TF32 off), tf32 (CUDA), bf16 autocast, fp16 autocast with "
               "a GradScaler (CUDA); weights stay fp32. CPU: fp32 and bf16 (docs/modes.md)",
               choices=PRECISIONS, default="fp32"),
        Option("--bench-memory-format", "memory_format", "memory format of the model's 4-D weights and of the "
               "input batch", choices=MEMORY_FORMATS, default="contiguous"),
        Option("--bench-compile", "compile", "torch.compile the model in this mode ('none': eager); compile time, "
               "recompilations and first-step latency are recorded. reduce-overhead needs CUDA",
               choices=COMPILE_MODES, default="none"),
        Option("--bench-threads", "threads", "intra-op CPU threads (pinned and recorded); default: torch's",
               positive_int, metavar="N"),
        Option("--bench-malloc", "malloc", "CPU only: 'steady' keeps glibc from unmapping and re-faulting tensor "
               "memory between steps (as CUDA's caching allocator does); 'system' leaves malloc alone",
               choices=MALLOC_MODES, default="steady"),
        Option("--bench-epochs", "epochs", "override the profile's training epochs", positive_int, metavar="N"),
        Option("--bench-seed", "seed", "seed for data, initialisation and batches", integer, default=0,
               metavar="N"),
        Option("--bench-seeds", "seeds", "train every case under several seeds (initialisation and batch order; "
               "the data stays --bench-seed's): N for N seeds from --bench-seed on, or a list such as 0,1,2. "
               "Accuracies are then the seeds' mean, with their spread", parse_seeds, metavar="N|LIST"),
        Option("--bench-kind", "kind", "which benchmarks to run: step (time/memory), train (accuracy), or both",
               choices=KINDS, default="both"),
        Option("--bench-weights", "weights", "initial weights for the training benchmarks: none (random init), "
               "pretrained (the torchvision weights each report used, from the torch hub cache) or PATH (a "
               "state-dict file of the case's model, loaded strictly); docs/weights.md", default="none",
               metavar="none|pretrained|PATH"),
        Option("--bench-allow-download", "allow_download", "with --bench-weights pretrained: let torchvision "
               "download weights missing from the torch hub cache (otherwise the run stops at start, naming the "
               "files)", switch=True),
        Option("--bench-data", "data", "dataset for the accuracy benchmarks: embedded (default), fashionmnist, "
               "cifar10, flowers102, dogbreeds or tinyimagenet (docs/data.md)", default="embedded",
               metavar="NAME"),
        Option("--data-root", "data_root", "where real datasets live (see README: Real datasets)", metavar="PATH"),
        Option("--bench-modules", "modules", "also break each step case down per module: forward and backward "
               "time, MACs, parameters and activation memory of the model's modules, in rounds of their own after "
               "the timed ones (docs/modules.md)", switch=True),
        Option("--bench-modules-depth", "modules_depth", "with --bench-modules: how deep to break down (1: the "
               "model's top-level children; 2: also their blocks)", positive_int, default=2, metavar="N"),
        Option("--bench-modules-rounds", "modules_rounds", "with --bench-modules: breakdown rounds per case "
               "(default: as many as the timed rounds)", positive_int, metavar="N"),
        Option("--bench-partial", "partial", "JSON-lines file each record is appended to as soon as it is "
               "measured; default: <--benchmark-json>.partial.jsonl (bench ab: DIR/{base,head}.partial.jsonl)",
               metavar="PATH"),
        Option("--bench-fail", "fail", "force a failure in a case, to test the harness: [SIDE/]CASE[:KIND], KIND "
               "one of error (default), oom, interrupt (on its first timed round), modules (the --bench-modules "
               "stage only), crash, hang (when the case is built); SIDE (base/ head/) under bench ab only "
               "(repeatable)", parse_fail, multiple=True, metavar="[SIDE/]CASE[:KIND]"),
    )
}


@dataclass(frozen=True)
class RunOptions:
    """Every ``--bench-*`` option of one run, parsed and typed (see :data:`OPTIONS` for each one's
    meaning). ``None`` means "the profile's" (or the machine's) choice."""

    cases: tuple[str, ...] = ()
    suites: tuple[str, ...] = ()
    profile: str | None = None
    device: str | None = None
    batch_size: int | None = None
    rounds: int | None = None
    warmup: int | None = None
    warmup_time: float | None = None
    precision: Precision = "fp32"
    memory_format: MemoryFormat = "contiguous"
    compile: CompileMode = "none"
    threads: int | None = None
    malloc: MallocMode = "steady"
    epochs: int | None = None
    seed: int = 0
    seeds: int | tuple[int, ...] | None = None
    kind: Kind = "both"
    weights: str = "none"
    allow_download: bool = False
    data: str = "embedded"
    data_root: str | None = None
    modules: bool = False
    modules_depth: int = 2
    modules_rounds: int | None = None
    partial: str | None = None
    fail: tuple[FailSpec, ...] = field(default=())

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> RunOptions:
        """From parsed option values by dest (pytest's ``config.getoption``, argparse's namespace);
        an absent or ``None`` value takes the option's default."""
        fields: dict[str, Any] = {}
        for option in OPTIONS.values():
            value = values.get(option.dest)
            if option.multiple:
                fields[option.field] = tuple(value or ())
            elif value is not None:
                fields[option.field] = value
            elif option.default is not None:
                fields[option.field] = option.default
        return cls(**fields)

    # -- what the run derives from them ---------------------------------------------------------------
    @property
    def modes(self) -> Modes:
        return Modes(self.precision, self.memory_format, self.compile)

    @property
    def seed_list(self) -> list[int]:
        """The seeds every case trains under (``--bench-seeds``; else ``--bench-seed`` alone)."""
        return seed_list(self.seed, self.seeds)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The benchmark kinds to run, step before train."""
        return ("step", "train") if self.kind == "both" else (self.kind,)

    def failure(self, case: str) -> FailKind | None:
        """The failure ``--bench-fail`` forces in ``case`` (the last spec naming it wins)."""
        found = [spec.kind for spec in self.fail if spec.case == case]
        return found[-1] if found else None

    def for_side(self, side: str) -> RunOptions:
        """The options of one ``bench ab`` side: its own ``--bench-fail`` specs and those of both sides."""
        return dataclasses.replace(self, fail=tuple(FailSpec(s.case, s.kind) for s in self.fail
                                                   if s.side in (None, side)))

    # -- the wire (bench ab's worker protocol) --------------------------------------------------------
    def to_wire(self) -> dict[str, Any]:
        """JSON for a ``bench ab`` worker: each option by dest, typed as JSON types it (lists for repeatable
        options, ``--bench-fail`` specs as typed), which the worker reads back through the same parsers
        (:meth:`from_wire`). ``inject`` repeats the failures in the shape workers of archbench 0.2-0.3
        read, which also read the rest of these keys."""
        out: dict[str, Any] = {}
        for option in OPTIONS.values():
            value = getattr(self, option.field)
            if option.multiple:
                out[option.dest] = [str(v) if isinstance(v, FailSpec) else v for v in value]
            elif isinstance(value, tuple):
                out[option.dest] = list(value)
            else:
                out[option.dest] = value
        out["inject"] = {spec.case: spec.kind for spec in self.fail}
        return out

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> RunOptions:
        """The inverse of :meth:`to_wire`; a value that fails its parser raises :class:`OptionError`.
        Also reads what a controller of archbench 0.2-0.3 sends (typed values, failures as ``inject``)."""
        values = {option.dest: option.read(wire.get(option.dest)) for option in OPTIONS.values()}
        if not values["bench_fail"] and isinstance(wire.get("inject"), Mapping):
            values["bench_fail"] = [parse_fail(f"{case}:{kind}") for case, kind in wire["inject"].items()]
        return cls.from_values(values)


def add_pytest_options(parser: Any) -> None:
    group = parser.getgroup("archbench", "archbench: what to measure and how hard")
    for option in OPTIONS.values():
        group.addoption(option.flag, **option.kwargs())


def add_argparse_option(parser: argparse.ArgumentParser, dest: str, *flags: str) -> None:
    """Add the shared option ``dest`` to an argparse parser, optionally under extra short flags."""
    option = OPTIONS[dest]
    parser.add_argument(option.flag, *flags, **option.kwargs())


def add_argparse_options(parser: argparse.ArgumentParser, exclude: Iterable[str] = ()) -> None:
    """Every option of :data:`OPTIONS` but those in ``exclude`` (by dest)."""
    skip = set(exclude)
    for dest in OPTIONS:
        if dest not in skip:
            add_argparse_option(parser, dest)
