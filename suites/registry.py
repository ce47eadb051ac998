"""Cases and the registry that names them.

A *case* is what the suite measures: an architecture builder, the training regime the report used
(which parameters train, which loss, which optimiser and schedule), the native input and class count,
and the report's own numbers kept as data next to their source table.

Suite modules expose a tuple ``CASES``; nothing is registered as a side effect of importing them.
:func:`registry` gathers them once and refuses duplicate names.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

#: Suite modules, one per report in ``shared/seeds/`` (module name → report file).
SUITE_MODULES: Mapping[str, str] = {
    "resnet50_dcn": "000_699cf4a7a57d9031.txt",
    "dogbreed": "001_c4cf654d12bd4853.txt",
    "dynconv": "002_bf1d37b3c58729d2.txt",
    "flowers": "003_3aea9f0c14bd0588.txt",
}

#: A builder makes a fresh, randomly initialised model with the case's regime applied
#: (``requires_grad`` already set). ``image_size`` matters only for architectures whose parameters
#: depend on it (ViT position embeddings, LayerNorm over (C, H, W)).
Builder = Callable[..., nn.Module]

Loss = Literal["cross_entropy", "nll", "tcel"]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "one_cycle"]


@dataclass(frozen=True)
class Stage:
    """One stage of a staged schedule; ``fraction`` is its share of the training budget."""

    fraction: float
    lr: float
    schedule: Schedule = "constant"


@dataclass(frozen=True)
class Regime:
    """How the report trained the case. Stages are scaled to the profile's budget by ``bench``."""

    loss: Loss
    optimizer: Optimizer
    stages: tuple[Stage, ...]
    weight_decay: float = 0.0
    grad_clip: float | None = None
    #: Early-stopping patience in epochs, where the report used it.
    patience: int | None = None
    #: Margin of the triplet term, only for ``loss == "tcel"``.
    triplet_margin: float = 1.0
    #: One line naming where in the report this comes from.
    source: str = ""

    def __post_init__(self) -> None:
        total = sum(s.fraction for s in self.stages)
        if not self.stages or abs(total - 1.0) > 1e-9:
            raise ValueError(f"regime stages must have fractions summing to 1, got {total}")


@dataclass(frozen=True)
class Reported:
    """Numbers as the report states them. ``None`` where the report gives none.

    ``accuracy`` and ``seconds_per_epoch`` are keyed by dataset name; accuracy is a fraction in [0, 1].
    ``gflops`` is kept verbatim, in the report's own (often unstated) convention.
    """

    source: str
    params: int | None = None
    params_approx: float | None = None  # when the report gives only e.g. "1.109M"
    accuracy: Mapping[str, float] = field(default_factory=dict)
    seconds_per_epoch: Mapping[str, float] = field(default_factory=dict)
    gflops: float | None = None
    mult_adds: int | None = None  # MobileNet's paper states mult-adds, not FLOPs
    note: str = ""
    #: Every other number the report gives for the case (losses, train/validation accuracy, other
    #: schedules, per-channel-subset accuracy), keyed by a short self-describing name such as
    #: ``"test_loss/CIFAR-10"``; accuracies as fractions.
    extra: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One measured architecture under one regime."""

    name: str
    suite: str
    builder: Builder
    input_size: int
    in_channels: int
    num_classes: int
    regime: Regime
    reported: Reported
    description: str = ""
    #: Whether the model ends in LogSoftmax (then the loss is NLL, and accuracy reads argmax the same).
    log_probs: bool = False

    def build(self, num_classes: int | None = None, image_size: int | None = None) -> nn.Module:
        """A fresh model for this case (native classes and input size unless given)."""
        return self.builder(
            num_classes=self.num_classes if num_classes is None else num_classes,
            image_size=self.input_size if image_size is None else image_size,
        )

    @property
    def report(self) -> str:
        return SUITE_MODULES[self.suite]


class Registry(Mapping[str, Case]):
    """Cases by name, in suite order. Refuses two cases with one name."""

    def __init__(self, cases: Iterable[Case]) -> None:
        self._cases: dict[str, Case] = {}
        for case in cases:
            if case.name in self._cases:
                raise ValueError(f"duplicate case name {case.name!r} (suite {case.suite!r})")
            self._cases[case.name] = case

    def __getitem__(self, name: str) -> Case:
        try:
            return self._cases[name]
        except KeyError:
            raise KeyError(f"unknown case {name!r}; `bench list` shows the cases") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._cases)

    def __len__(self) -> int:
        return len(self._cases)

    def select(self, patterns: Iterable[str] = (), suites: Iterable[str] = ()) -> list[Case]:
        """Cases whose name matches any glob in ``patterns`` and whose suite is in ``suites``
        (an empty filter admits everything). Unknown suite names are an error."""
        patterns, suites = list(patterns), list(suites)
        unknown = [s for s in suites if s not in SUITE_MODULES]
        if unknown:
            raise KeyError(f"unknown suite(s) {unknown}; known: {sorted(SUITE_MODULES)}")
        return [
            c
            for c in self._cases.values()
            if (not suites or c.suite in suites)
            and (not patterns or any(fnmatch.fnmatchcase(c.name, p) for p in patterns))
        ]


@functools.cache
def registry() -> Registry:
    """Every case of every suite module, built once on first use."""
    cases: list[Case] = []
    for module_name in SUITE_MODULES:
        module = importlib.import_module(f"suites.{module_name}")
        cases.extend(module.CASES)
    return Registry(cases)


def get_case(name: str) -> Case:
    """The case called ``name``. ``resnet50_dcn_abcd`` works for any valid ``abcd``."""
    reg = registry()
    if name in reg:
        return reg[name]
    if name.startswith("resnet50_dcn_"):
        from suites import resnet50_dcn

        return resnet50_dcn.case_for(name.removeprefix("resnet50_dcn_"))
    return reg[name]
