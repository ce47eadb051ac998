"""The case types: what one measured architecture is, under which regime, with which reported numbers.

A *case* is what the suite measures: an architecture builder, the training regime the report used
(which parameters train, which loss, which optimiser and schedule), the native input and class count,
and the report's own numbers kept as data next to their source table. docs/cases.md describes every
case; this module only defines the types, and imports no suite.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from torch import nn
from torchvision.models import WeightsEnum

__all__ = [
    "SCRATCH_FC", "Builder", "Case", "Loss", "Optimizer", "Regime", "Reported", "Resolver", "Schedule", "Stage",
    "WeightsMap",
]

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
class WeightsMap:
    """Where a case's initial weights come from and how a state dict maps onto its model: declared
    next to the case, as torchvision keeps its per-weight ``meta`` next to each model. ``bench`` does the
    loading (bench/measure/weights.py, docs/weights.md); this is data only.

    Keys are the model's ``state_dict`` keys. Patterns are :mod:`fnmatch` globs over whole keys, and
    every pattern and prefix must match at least one key (a table that names nothing is stale).
    """

    #: The classifier head's module name (``"fc"``, ``"classifier.1"``): its parameters are kept at the
    #: builder's initialisation, instead of loaded, when the file's class count differs from the run's.
    head: str
    #: The torchvision weights the report's backbone started from (``--bench-weights pretrained``);
    #: ``None`` when the report trained from scratch (the case then stays random, recorded as such).
    pretrained: WeightsEnum | None = None
    #: Applied to the pretrained file's keys: (file key prefix, model key prefix), for a module the
    #: case moved or wrapped, e.g. a conv2 that became the deformable conv of a DCNv1.
    renames: tuple[tuple[str, str], ...] = ()
    #: Model keys that are the case's own modules (not in torchvision's architecture): kept at their
    #: initialisation. Any other model key the file lacks is an error.
    new: tuple[str, ...] = ()
    #: File keys of modules the case removed (SE blocks replaced by ECA): deliberately not loaded. Any
    #: other file key the model lacks is an error.
    unused: tuple[str, ...] = ()
    #: ViT: interpolate the file's position embedding to the run's image size (torchvision's
    #: ``interpolate_embeddings``), as the patch grid depends on it.
    resize_pos_embedding: bool = False
    #: Which weights the report used, and why this enum member.
    why: str = ""


#: The case's regime trains from scratch and its classifier is ``fc``: for ``--bench-weights PATH`` only.
SCRATCH_FC = WeightsMap(head="fc", why="the report trained from scratch")


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
    #: The report the case comes from, as its suite module's ``REPORT`` names it ("000: <title>";
    #: docs/cases.md numbers the four reports). Empty for cases made outside a suite module.
    report: str = ""
    #: Initial weights: what ``--bench-weights pretrained`` loads and how a state dict maps onto the
    #: model (:class:`WeightsMap`). ``None`` for cases made outside a suite module: they stay random under
    #: ``pretrained`` and load a ``PATH`` strictly, with no classifier head re-initialised.
    weights: WeightsMap | None = None

    def build(self, num_classes: int | None = None, image_size: int | None = None) -> nn.Module:
        """A fresh model for this case (native classes and input size unless given)."""
        return self.builder(
            num_classes=self.num_classes if num_classes is None else num_classes,
            image_size=self.input_size if image_size is None else image_size,
        )


#: A suite's optional ``resolve(name)``: the case called ``name`` if the suite builds it on demand (a
#: configuration outside its ``CASES``), ``None`` if the name is not the suite's; ``ValueError`` if the
#: name is the suite's but invalid.
Resolver = Callable[[str], "Case | None"]
