"""What one training step computes under a case's regime: the loss and the optimiser.

Shared by the timing harness and the trainer so that the step that is timed is the step that trains.
"""

from __future__ import annotations

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

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.images), move(self.labels), move(self.positives), move(self.negatives))

    def __len__(self) -> int:
        return int(self.images.shape[0])


def compute_loss(regime: Regime, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, anchor outputs) for one batch. ``nll`` expects LogSoftmax outputs; ``tcel`` is
    triplet-margin loss on the model outputs of (anchor, positive, negative) plus cross-entropy on the
    anchor, three forward passes as in report 003 §3.2."""
    outputs = model(batch.images)
    if regime.loss == "cross_entropy":
        return F.cross_entropy(outputs, batch.labels), outputs
    if regime.loss == "nll":
        return F.nll_loss(outputs, batch.labels), outputs
    if regime.loss == "tcel":
        if batch.positives is None or batch.negatives is None:
            raise ValueError("the tcel loss needs a batch with positives and negatives")
        triplet = F.triplet_margin_loss(
            outputs, model(batch.positives), model(batch.negatives), margin=regime.triplet_margin
        )
        return triplet + F.cross_entropy(outputs, batch.labels), outputs
    raise ValueError(f"unknown loss {regime.loss!r}")


def make_optimizer(regime: Regime, model: nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
    """The regime's optimiser over the trainable parameters, at the first stage's learning rate."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters under this regime")
    lr = regime.stages[0].lr if lr is None else lr
    if regime.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=regime.weight_decay)
    if regime.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=regime.weight_decay)
    if regime.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=regime.weight_decay)
    raise ValueError(f"unknown optimizer {regime.optimizer!r}")
