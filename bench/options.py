"""Options shared by the pytest plugin (``pytest bench/ --bench-…``) and the ``bench`` CLI.

Each option is defined once here; :func:`add_pytest_options` and :func:`add_argparse_option` turn the
definitions into pytest and argparse options with the same name, help, type and default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.modes import COMPILE_MODES, MEMORY_FORMATS, PRECISIONS
from bench.profiles import PROFILES


def parse_seeds(text: str) -> int | tuple[int, ...]:
    """``--bench-seeds``: a count (``"3"``) or a comma-separated list of distinct seeds (``"0,5,9"``)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bench-seeds {text!r}: expected N or a list such as 0,1,2") from None
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise argparse.ArgumentTypeError(f"--bench-seeds {text!r}: the count must be at least 1")
        return values[0]
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"--bench-seeds {text!r}: a seed is listed twice")
    return tuple(values)


def seed_list(first: int, seeds: int | Sequence[int] | None) -> list[int]:
    """The seeds to train under: ``first`` alone, ``first .. first+N-1`` for a count, or the list."""
    if seeds is None:
        return [first]
    if isinstance(seeds, int):
        return [first + i for i in range(seeds)]
    return list(seeds)


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    type: Callable[[str], Any] = str
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
        kw: dict[str, Any] = {"help": self.help, "default": self.default, "dest": self.dest}
        if self.switch:
            return {"help": self.help, "default": False, "dest": self.dest, "action": "store_true"}
        if self.multiple:
            kw.update(action="append", default=[] if self.default is None else self.default)
        if self.type is not str:
            kw["type"] = self.type
        if self.choices is not None:
            kw["choices"] = list(self.choices)
        if self.metavar:
            kw["metavar"] = self.metavar
        return kw


OPTIONS: dict[str, Option] = {
    o.dest: o
    for o in (
        Option("--bench-case", "only cases matching this glob (repeatable), e.g. 'resnet50_dcn_*'",
               multiple=True, metavar="GLOB"),
        Option("--bench-suite", "only cases of this suite (repeatable): resnet50_dcn, dogbreed, dynconv, flowers",
               multiple=True, metavar="SUITE"),
        Option("--bench-profile", "measurement profile; default: full with CUDA, smoke without",
               choices=sorted(PROFILES)),
        Option("--bench-device", "cpu, cuda or cuda:N; default: cuda when available", metavar="DEVICE"),
        Option("--bench-batch-size", "override the profile's timing batch size", type=int, metavar="N"),
        Option("--bench-rounds", "override the profile's timed rounds", type=int, metavar="N"),
        Option("--bench-warmup", "override the profile's warm-up rounds", type=int, metavar="N"),
        Option("--bench-warmup-time", "override the profile's minimum warm-up time: warm-up runs until both "
               "the rounds and this many seconds are reached", type=float, metavar="SECONDS"),
        Option("--bench-precision", "fp32 (TF32 off), tf32 (CUDA), bf16 autocast, fp16 autocast with a "
               "GradScaler (CUDA); weights stay fp32. CPU: fp32 and bf16 (docs/modes.md)",
               choices=PRECISIONS, default="fp32"),
        Option("--bench-memory-format", "memory format of the model's 4-D weights and of the input batch",
               choices=MEMORY_FORMATS, default="contiguous"),
        Option("--bench-compile", "torch.compile the model in this mode ('none': eager); compile time, "
               "recompilations and first-step latency are recorded. reduce-overhead needs CUDA",
               choices=COMPILE_MODES, default="none"),
        Option("--bench-threads", "intra-op CPU threads (pinned and recorded); default: torch's", type=int,
               metavar="N"),
        Option("--bench-malloc", "CPU only: 'steady' keeps glibc from unmapping and re-faulting tensor memory "
               "between steps (as CUDA's caching allocator does); 'system' leaves malloc alone",
               choices=("steady", "system"), default="steady"),
        Option("--bench-epochs", "override the profile's training epochs", type=int, metavar="N"),
        Option("--bench-seed", "seed for data, initialisation and batches", type=int, default=0, metavar="N"),
        Option("--bench-seeds", "train every case under several seeds (initialisation and batch order; the "
               "data stays --bench-seed's): N for N seeds from --bench-seed on, or a list such as 0,1,2. "
               "Accuracies are then the seeds' mean, with their spread", type=parse_seeds, metavar="N|LIST"),
        Option("--bench-kind", "which benchmarks to run: step (time/memory), train (accuracy), or both",
               choices=("step", "train", "both"), default="both"),
        Option("--bench-weights", "initial weights for the training benchmarks: none (random init), pretrained "
               "(the torchvision weights each report used, from the torch hub cache) or PATH (a state-dict file "
               "of the case's model, loaded strictly); docs/weights.md", default="none",
               metavar="none|pretrained|PATH"),
        Option("--bench-allow-download", "with --bench-weights pretrained: let torchvision download weights missing "
               "from the torch hub cache (otherwise the run stops at start, naming the files)",
               switch=True),
        Option("--bench-data", "dataset for the accuracy benchmarks (default: the embedded one)",
               default="embedded", metavar="NAME"),
        Option("--data-root", "where real datasets live (see README: Real datasets)", metavar="PATH"),
        Option("--bench-modules", "also break each step case down per module: forward and backward time, MACs, "
               "parameters and activation memory of the model's modules, in rounds of their own after the timed "
               "ones (docs/modules.md)", switch=True),
        Option("--bench-modules-depth", "with --bench-modules: how deep to break down (1: the model's top-level "
               "children; 2: also their blocks)", type=int, default=2, metavar="N"),
        Option("--bench-modules-rounds", "with --bench-modules: breakdown rounds per case (default: as many as "
               "the timed rounds)", type=int, metavar="N"),
        Option("--bench-partial", "JSON-lines file each record is appended to as soon as it is measured; "
               "default: <--benchmark-json>.partial.jsonl", metavar="PATH"),
        Option("--bench-fail", "force a failure in a case, to test the harness: CASE, CASE:oom, CASE:interrupt or "
               "CASE:modules (only the --bench-modules stage fails) (repeatable)",
               multiple=True, metavar="CASE[:KIND]"),
    )
}


def add_pytest_options(parser: Any) -> None:
    group = parser.getgroup("archbench", "archbench: what to measure and how hard")
    for option in OPTIONS.values():
        group.addoption(option.flag, **option.kwargs())


def add_argparse_option(parser: argparse.ArgumentParser, dest: str, *flags: str) -> None:
    """Add the shared option ``dest`` to an argparse parser, optionally under extra short flags."""
    option = OPTIONS[dest]
    parser.add_argument(option.flag, *flags, **option.kwargs())
