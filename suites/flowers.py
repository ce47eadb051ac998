"""Report 003, "SC4001: Neural Network & Deep Learning, Group Project" (Darren Choo Jian Hao, Gan Hao Yi,
Foo Jin Rui, Nanyang Technological University): EfficientNet-B0, ViT-B/16 and ResNet-18 variants on
Flowers102 (102 classes, input 224). docs/cases.md, "Report 003", has the cases and where each number
comes from.

* EfficientNet-B0 (torchvision): frozen (classifier only) and full fine-tune; ``_eca`` replaces the
  SqueezeExcitation of every MBConv block by :class:`~suites.layers.ECA` on the same channels (§2.2).
* ViT-B/16 (torchvision, ``image_size`` honoured): frozen (head only), full, and TCEL — triplet margin
  loss plus cross-entropy, three forwards per step (§3.2). Where the triplet term applies is not said
  outright; "the output channel does not have any semantic meaning" (under triplet loss alone) points
  to the model outputs, which is what ``bench`` uses.
* ResNet-18 (torchvision): frozen (fc only) and full; two deformable variants (§4.2), trained fully:

  - ``resnet18_deform_after_conv1``: conv1 → DCNv1 → bn1 → … The report does not give the deformable
    layer's shape; chosen: 64→64, 3×3, stride 1, pad 1 (keeps 112×112), zero-initialised offset conv
    with bias, no bias on the deformable conv (bn1 follows, as for conv1): +47,250 params.
  - ``resnet18_conv1_plus_deform``: conv1(x) + deform(x) → bn1 → …, deform a DCNv1 3→64, 7×7,
    stride 2, pad 3 like conv1, offset conv on x, no bias: +23,912 params.

Regime: optimiser, learning rate and epochs are not stated in report 003; Adam is assumed, lr 1e-3
when only the classifier trains and 1e-4 for full fine-tuning. The TCEL triplet margin is not stated
either (1.0, PyTorch's default, assumed).
"""

from __future__ import annotations

import dataclasses
import functools

import torchvision
from torch import Tensor, nn
from torchvision.models import EfficientNet_B0_Weights, ResNet18_Weights, ViT_B_16_Weights
from torchvision.ops.misc import SqueezeExcitation

from suites.case import Builder, Case, Regime, Reported, Stage, WeightsMap
from suites.layers import ECA, DCNv1, freeze_except

__all__ = [
    "CASES",
    "REPORT",
    "SUITE",
    "Conv1PlusDeform",
    "build_efficientnet_b0",
    "build_resnet18",
    "build_vit_b_16",
    "replace_se_with_eca",
]

SUITE = "flowers"
REPORT = ("003: 'SC4001: Neural Network & Deep Learning, Group Project', Darren Choo Jian Hao, Gan Hao Yi, "
          "Foo Jin Rui (Nanyang Technological University)")
NUM_CLASSES = 102
INPUT_SIZE = 224
_DATASET = "Flowers102"


def replace_se_with_eca(model: nn.Module) -> int:
    """Replace every torchvision SqueezeExcitation inside ``model`` by ECA on its input channels, in
    place; returns how many were replaced."""
    replaced = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, SqueezeExcitation):
                setattr(parent, name, ECA(child.fc1.in_channels))
                replaced += 1
    return replaced


def build_efficientnet_b0(
    eca: bool = False, frozen: bool = False, num_classes: int = NUM_CLASSES, image_size: int = INPUT_SIZE
) -> nn.Module:
    """torchvision EfficientNet-B0, optionally with ECA for SE and frozen but for the classifier;
    ``image_size`` is ignored."""
    model = torchvision.models.efficientnet_b0(weights=None, num_classes=num_classes)
    if eca and replace_se_with_eca(model) == 0:
        raise RuntimeError("no SqueezeExcitation found in torchvision's EfficientNet-B0")
    return freeze_except(model, [model.classifier]) if frozen else model


def build_vit_b_16(
    frozen: bool = False, num_classes: int = NUM_CLASSES, image_size: int = INPUT_SIZE
) -> nn.Module:
    """torchvision ViT-B/16 at ``image_size`` (a multiple of 16; sets the position embedding),
    optionally frozen but for the head."""
    if image_size % 16:
        raise ValueError(f"ViT-B/16 needs an image size divisible by 16, got {image_size}")
    model = torchvision.models.vit_b_16(weights=None, num_classes=num_classes, image_size=image_size)
    return freeze_except(model, [model.heads]) if frozen else model


class Conv1PlusDeform(nn.Module):
    """ResNet-18's conv1 with a parallel deformable 7×7 stride-2 conv on the same input, summed."""

    def __init__(self, conv1: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv1
        self.deform = DCNv1(conv1.in_channels, conv1.out_channels, 7, stride=2, padding=3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + self.deform(x)


def build_resnet18(
    variant: str = "plain", frozen: bool = False, num_classes: int = NUM_CLASSES, image_size: int = INPUT_SIZE
) -> nn.Module:
    """torchvision ResNet-18; ``variant`` ∈ {"plain", "deform_after_conv1", "conv1_plus_deform"};
    ``image_size`` is ignored."""
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if variant == "deform_after_conv1":
        model.conv1 = nn.Sequential(model.conv1, DCNv1(64, 64, 3, stride=1, padding=1, bias=False))
    elif variant == "conv1_plus_deform":
        model.conv1 = Conv1PlusDeform(model.conv1)
    elif variant != "plain":
        raise ValueError(f"unknown ResNet-18 variant {variant!r}")
    return freeze_except(model, [model.fc]) if frozen else model


_NOT_STATED = "optimiser, lr and epochs not stated in report 003"
FROZEN_REGIME = Regime(
    loss="cross_entropy",
    optimizer="adam",
    stages=(Stage(1.0, 1e-3),),
    source=f"003 §1 baseline 1 (whole architecture frozen, last layer trained); {_NOT_STATED}; "
    "Adam lr 1e-3 assumed",
)
FULL_REGIME = Regime(
    loss="cross_entropy",
    optimizer="adam",
    stages=(Stage(1.0, 1e-4),),
    source=f"003 §1 baseline 2 (entire architecture trained); {_NOT_STATED}; Adam lr 1e-4 assumed",
)
TCEL_REGIME = Regime(
    loss="tcel",
    optimizer="adam",
    stages=(Stage(1.0, 1e-4),),
    triplet_margin=1.0,
    source=f"003 §3.2: triplet loss + cross-entropy (TCEL), random positive/negative per anchor, the "
    f"triplet term on the model outputs (TL alone left them 'without semantic meaning'); {_NOT_STATED}; "
    "Adam lr 1e-4 assumed; margin not stated (1.0 assumed)",
)
DEFORM_REGIME = dataclasses.replace(
    FULL_REGIME,
    source=f"003 §4.2-4.3: modified ResNet-18, deformable layers randomly initialised; which parameters "
    f"train is not stated (all assumed, as in baseline 2); {_NOT_STATED}; Adam lr 1e-4 assumed",
)


# Initial weights (--bench-weights pretrained, docs/weights.md). Report 003 fine-tunes "pretrained"
# torchvision models without naming the weights. In its time that meant `pretrained=True`, which gives
# each model's IMAGENET1K_V1 weights: the only ones ResNet-18 and EfficientNet-B0 have, and for ViT-B/16
# the original recipe (its SWAG weights came later as separate members, never what pretrained=True loads).
# Modules the report added start from their own initialisation.
_V1 = "003 §1: pretrained torchvision model; pretrained=True gave IMAGENET1K_V1"
EFFICIENTNET_B0_WEIGHTS = WeightsMap(head="classifier.1", pretrained=EfficientNet_B0_Weights.IMAGENET1K_V1, why=_V1)
EFFICIENTNET_B0_ECA_WEIGHTS = WeightsMap(
    head="classifier.1",
    pretrained=EfficientNet_B0_Weights.IMAGENET1K_V1,
    # ECA replaces each SqueezeExcitation at the same position in the MBConv block: its 1-D conv is new,
    # the SE block's fc1/fc2 have nowhere to go (§2.2 trains ECA from its initialisation)
    new=("features.*.block.*.conv.weight",),
    unused=("features.*.block.*.fc1.*", "features.*.block.*.fc2.*"),
    why=_V1 + "; the ECA blocks are new (SE weights unused)",
)
VIT_B_16_WEIGHTS = WeightsMap(head="heads.head", pretrained=ViT_B_16_Weights.IMAGENET1K_V1,
                              resize_pos_embedding=True, why=_V1)
RESNET18_WEIGHTS = WeightsMap(head="fc", pretrained=ResNet18_Weights.IMAGENET1K_V1, why=_V1)
RESNET18_DEFORM_AFTER_CONV1_WEIGHTS = WeightsMap(
    head="fc",
    pretrained=ResNet18_Weights.IMAGENET1K_V1,
    renames=(("conv1.", "conv1.0."),),  # conv1 became the first module of Sequential(conv1, DCNv1)
    new=("conv1.1.*",),
    why=_V1 + "; the deformable layer after conv1 is new (§4.2: randomly initialised)",
)
RESNET18_CONV1_PLUS_DEFORM_WEIGHTS = WeightsMap(
    head="fc",
    pretrained=ResNet18_Weights.IMAGENET1K_V1,
    renames=(("conv1.", "conv1.conv."),),  # Conv1PlusDeform keeps the plain conv1 as .conv
    new=("conv1.deform.*",),
    why=_V1 + "; the parallel 7×7 deformable conv is new (§4.2: randomly initialised)",
)


def _case(name: str, builder: Builder, regime: Regime, reported: Reported, description: str,
          weights: WeightsMap) -> Case:
    return Case(
        name=f"flowers_{name}",
        suite=SUITE,
        builder=builder,
        input_size=INPUT_SIZE,
        in_channels=3,
        num_classes=NUM_CLASSES,
        regime=regime,
        reported=reported,
        description=description,
        report=REPORT,
        weights=weights,
    )


def _reported(source: str, test: float, **extra: float) -> Reported:
    return Reported(source=source, accuracy={_DATASET: test}, extra=extra, note="accuracy: test set")


_EFF = "003 §2.3 (text) and Figure 4"
_VIT = "003 §3.3 (text) and Figure 6"
_RES = "003 §4.3 (text) and Figure 10"

CASES: tuple[Case, ...] = (
    _case("efficientnet_b0_frozen", functools.partial(build_efficientnet_b0, False, True), FROZEN_REGIME,
          _reported(_EFF, 0.836, max_val_acc=0.867),
          "torchvision EfficientNet-B0, only the classifier trains", EFFICIENTNET_B0_WEIGHTS),
    _case("efficientnet_b0", functools.partial(build_efficientnet_b0, False, False), FULL_REGIME,
          _reported(_EFF, 0.879, max_val_acc=0.910),
          "torchvision EfficientNet-B0, full fine-tune", EFFICIENTNET_B0_WEIGHTS),
    _case("efficientnet_b0_eca", functools.partial(build_efficientnet_b0, True, False), FULL_REGIME,
          _reported(_EFF, 0.879, max_val_acc=0.885),
          "EfficientNet-B0 with every SE block replaced by ECA, full fine-tune", EFFICIENTNET_B0_ECA_WEIGHTS),
    _case("vit_b_16_frozen", functools.partial(build_vit_b_16, True), FROZEN_REGIME,
          _reported(_VIT, 0.855, max_val_acc=0.872),
          "torchvision ViT-B/16, only the head trains", VIT_B_16_WEIGHTS),
    _case("vit_b_16", functools.partial(build_vit_b_16, False), FULL_REGIME,
          _reported(_VIT, 0.646, max_val_acc=0.691),
          "torchvision ViT-B/16, full fine-tune with cross-entropy", VIT_B_16_WEIGHTS),
    _case("vit_b_16_tcel", functools.partial(build_vit_b_16, False), TCEL_REGIME,
          _reported(_VIT, 0.876, max_val_acc=0.892, min_val_acc_triplet_loss_only=0.03),
          "torchvision ViT-B/16, full fine-tune with triplet + cross-entropy loss", VIT_B_16_WEIGHTS),
    _case("resnet18_frozen", functools.partial(build_resnet18, "plain", True), FROZEN_REGIME,
          _reported(_RES, 0.801, train_acc=0.787, val_acc=0.836),
          "torchvision ResNet-18, only fc trains", RESNET18_WEIGHTS),
    _case("resnet18", functools.partial(build_resnet18, "plain", False), FULL_REGIME,
          _reported(_RES, 0.873, train_acc=0.874, val_acc=0.903),
          "torchvision ResNet-18, full fine-tune", RESNET18_WEIGHTS),
    _case("resnet18_deform_after_conv1", functools.partial(build_resnet18, "deform_after_conv1", False),
          DEFORM_REGIME, _reported(_RES, 0.565, train_acc=0.659, val_acc=0.625),
          "ResNet-18 with a 3×3 DCNv1 (64→64) after conv1", RESNET18_DEFORM_AFTER_CONV1_WEIGHTS),
    _case("resnet18_conv1_plus_deform", functools.partial(build_resnet18, "conv1_plus_deform", False),
          DEFORM_REGIME, _reported(_RES, 0.731, train_acc=0.853, val_acc=0.788),
          "ResNet-18 with conv1(x) + 7×7 stride-2 DCNv1(x)", RESNET18_CONV1_PLUS_DEFORM_WEIGHTS),
)
