"""What one training step computes under a case's regime: the loss and the optimiser.

Shared by the timing harness and the trainer so that the step that is timed is the step that trains.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from suites.registry import Regime


@dataclass
class Batch:
    """Images and labels; triplet regimes also carry a positive and a negative per anchor."""

    images: torch.Tensor
    labels: torch.Tensor
    positives: torch.Tensor | None = None
    negatives: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(self.images.to(device, non_blocking=True), self.labels.to(device, non_blocking=True),
                     move(self.positives), move(self.negatives))

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class Loss:
    """One batch's loss: ``total`` is what is back-propagated; ``classification`` is the NLL or
    cross-entropy part alone (comparable across regimes); ``outputs`` are the anchor's outputs."""

    total: torch.Tensor
    classification: torch.Tensor
    outputs: torch.Tensor


def classification_loss(regime: Regime, outputs: torch.Tensor, labels: torch.Tensor,
                        reduction: str = "mean") -> torch.Tensor:
    """NLL on LogSoftmax outputs for ``nll``; cross-entropy on logits otherwise (``tcel`` included)."""
    if regime.loss == "nll":
        return F.nll_loss(outputs, labels, reduction=reduction)
    if regime.loss in ("cross_entropy", "tcel"):
        return F.cross_entropy(outputs, labels, reduction=reduction)
    raise ValueError(f"unknown loss {regime.loss!r}")


def compute_loss(regime: Regime, model: nn.Module, batch: Batch) -> Loss:
    """The regime's loss for one batch. ``tcel`` is triplet-margin loss on the model outputs of
    (anchor, positive, negative) plus cross-entropy on the anchor: three forward passes, as in report 003
    §3.2 (the triplet loss is on the outputs, the report's "output channel")."""
    outputs = model(batch.images)
    classification = classification_loss(regime, outputs, batch.labels)
    if regime.loss != "tcel":
        return Loss(classification, classification, outputs)
    if batch.positives is None or batch.negatives is None:
        raise ValueError("the tcel loss needs a batch with positives and negatives")
    triplet = F.triplet_margin_loss(
        outputs, model(batch.positives), model(batch.negatives), margin=regime.triplet_margin
    )
    return Loss(classification + triplet, classification, outputs)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the case's regime trains (its builder already froze the rest)."""
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(regime: Regime, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The regime's optimiser over ``params`` at learning rate ``lr`` (SGD with momentum 0.9)."""
    params = list(params)
    if not params:
        raise ValueError("no trainable parameters under this regime")
    if regime.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=regime.weight_decay)
    if regime.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=regime.weight_decay)
    if regime.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=regime.weight_decay)
    raise ValueError(f"unknown optimizer {regime.optimizer!r}")
