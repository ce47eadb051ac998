"""Report 001, "CSC413 Group45 Final Project" (Vanessa Yu, Zuoyu Wang, Yixuan Chen, University of
Toronto): a small CNN for 7 dog breeds, its depthwise-separable and deformable variants, and the
MobileNet v1 family the report sets out to re-implement. docs/cases.md, "Report 001", has the cases and
where each number comes from.

The three report networks (§4.2 and the Appendix structure tables) share one layout, 7 conv layers
with channels 32,32,64,64,128,128,256 and stride 2 on layers 1,3,5,7, then global average pool,
Linear(256, 7) and LogSoftmax:

* ``dogbreed_cnn``: every layer Conv3×3 pad 1 (bias) → BN → ReLU. 585,383 params.
* ``dogbreed_dsc``: layer 1 as above, layers 2–7 depthwise-separable (DW 3×3 with bias → BN → ReLU →
  PW 1×1 with bias → BN → ReLU). 74,663 params.
* ``dogbreed_deformable``: layers 2, 4, 6 DCNv1 (offset conv C→18 with bias, deformable conv C→C with
  bias). 621,725 params.

Input 224 (the Appendix's first output is 112×112 after a stride-2 conv). Regime (§4.3): 3 stages of
one-cycle schedules with max lr 0.01/0.001/0.0001; the report tried epoch splits 20/14/6, 50/7/3 and
50/14/6, we encode 50/14/6; grad clip 0.1, weight decay 1e-4, NLL on the LogSoftmax output. Validation
and test images were randomly deformed.

MobileNet v1 (Howard et al. 2017) cases: width multiplier α ∈ {1, 0.75, 0.5, 0.25} at 224 and input
size ∈ {192, 160, 128} at α = 1, 1000 classes, with the paper's params and mult-adds (Tables 6 and 7).
"""

from __future__ import annotations

import functools
from collections import OrderedDict

from torch import nn

from suites.case import SCRATCH_FC, Case, Regime, Reported, Stage
from suites.layers import DCNv1, DepthwiseSeparable, MobileNetV1

__all__ = ["CASES", "DOGBREED_LAYERS", "REPORT", "SUITE", "build_dogbreed", "build_mobilenet_v1"]

SUITE = "dogbreed"
REPORT = "001: 'CSC413 Group45 Final Project', Vanessa Yu, Zuoyu Wang, Yixuan Chen (University of Toronto)"

#: (output channels, stride) of the 7 conv layers — report 001 §4.2.1 and Appendix
#: "DogBreedClassificationCNN Structure" (Conv2d-1 … Conv2d-19).
DOGBREED_LAYERS: tuple[tuple[int, int], ...] = (
    (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2),
)

#: Which layers (1-based) each variant builds differently (§4.2.2, §4.2.3 "every other layer").
_DSC_LAYERS = frozenset({2, 3, 4, 5, 6, 7})
_DEFORMABLE_LAYERS = frozenset({2, 4, 6})


def _conv_bn_relu(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def build_dogbreed(variant: str, num_classes: int = 7, image_size: int = 224) -> nn.Module:
    """``variant`` ∈ {"cnn", "dsc", "deformable"}; ends in LogSoftmax. ``image_size`` is ignored
    (global pooling)."""
    if variant not in ("cnn", "dsc", "deformable"):
        raise ValueError(f"unknown dogbreed variant {variant!r}")
    layers: list[tuple[str, nn.Module]] = []
    in_ch = 3
    for i, (out_ch, stride) in enumerate(DOGBREED_LAYERS, start=1):
        layer: nn.Module
        if variant == "dsc" and i in _DSC_LAYERS:
            layer = DepthwiseSeparable(in_ch, out_ch, stride, bias=True)
        elif variant == "deformable" and i in _DEFORMABLE_LAYERS:
            layer = _conv_bn_relu(DCNv1(in_ch, out_ch, 3, stride, 1, bias=True), out_ch)
        else:
            layer = _conv_bn_relu(nn.Conv2d(in_ch, out_ch, 3, stride, 1), out_ch)
        layers.append((f"layer{i}", layer))
        in_ch = out_ch
    layers += [
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten(1)),
        ("fc", nn.Linear(in_ch, num_classes)),
        ("log_softmax", nn.LogSoftmax(dim=1)),
    ]
    return nn.Sequential(OrderedDict(layers))


def build_mobilenet_v1(alpha: float, num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    """MobileNet v1 with width multiplier ``alpha``; ``image_size`` (the resolution multiplier) does
    not change any parameter and is ignored."""
    return MobileNetV1(alpha=alpha, num_classes=num_classes)


DOGBREED_REGIME = Regime(
    loss="nll",
    optimizer="adam",
    stages=(
        Stage(50 / 70, 0.01, "one_cycle"),
        Stage(14 / 70, 0.001, "one_cycle"),
        Stage(6 / 70, 0.0001, "one_cycle"),
    ),
    weight_decay=1e-4,
    grad_clip=0.1,
    source="001 §4.3: 3 stages, epochs 50/14/6 (of 20/14/6, 50/7/3, 50/14/6 tried), one-cycle max lr "
    "0.01/0.001/0.0001, grad_clip 0.1, weight_decay 1e-4, NLL on LogSoftmax; the report doesn't "
    "name the optimiser; Adam assumed",
)

# Report 001 §4.3.1–4.3.3 result tables: metric → value per epoch split (20/14/6, 50/7/3, 50/14/6).
_SPLITS = ("20/14/6", "50/7/3", "50/14/6")
_RESULTS: dict[str, dict[str, tuple[float, float, float]]] = {
    "cnn": {
        "train_loss": (0.9680, 0.5488, 0.5086), "train_acc": (0.7050, 0.8925, 0.9050),
        "val_loss": (1.3285, 1.4217, 1.2668), "val_acc": (0.5333, 0.5333, 0.5646),
        "test_loss": (1.3299, 1.2469, 1.2487), "test_acc": (0.5101, 0.5901, 0.5923),
    },
    "dsc": {
        "train_loss": (1.1875, 0.5744, 0.6265), "train_acc": (0.6133, 0.8508, 0.8592),
        "val_loss": (1.4953, 1.1783, 1.1861), "val_acc": (0.4542, 0.5708, 0.5521),
        "test_loss": (1.3417, 1.3159, 1.3388), "test_acc": (0.5148, 0.5622, 0.5471),
    },
    "deformable": {
        "train_loss": (0.8231, 0.2878, 0.2178), "train_acc": (0.7700, 0.9467, 0.9883),
        "val_loss": (1.1414, 1.2395, 1.3552), "val_acc": (0.6562, 0.5583, 0.6250),
        "test_loss": (1.4600, 1.5843, 1.3622), "test_acc": (0.4649, 0.5044, 0.5682),
    },
}
_TABLES = {"cnn": "§4.3.1", "dsc": "§4.3.2", "deformable": "§4.3.3"}
_PARAMS = {"cnn": 585_383, "dsc": 74_663, "deformable": 621_725}  # Appendix structure tables
_NAMES = {
    "cnn": "DogBreedClassificationCNN",
    "dsc": "DogBreedClassificationDSC",
    "deformable": "DogBreedClassificationDeformableCNN",
}


def _dogbreed_reported(variant: str) -> Reported:
    results = _RESULTS[variant]
    extra = {f"{metric}/{split}": v for metric, vals in results.items() for split, v in zip(_SPLITS, vals)}
    test = dict(zip(_SPLITS, results["test_acc"]))
    best = max(test, key=test.__getitem__)
    return Reported(
        source=f"001 {_TABLES[variant]} table ({_NAMES[variant]} Results) and Appendix structure table",
        params=_PARAMS[variant],
        accuracy={"DogBreeds7": test["50/14/6"]},
        extra=extra,
        note=f"accuracy: test set (randomly deformed) after the 50/14/6 schedule the regime encodes; "
        f"the best over the three schedules is {test[best]} ({best}); extra holds every table entry",
    )


def _dogbreed_case(variant: str, description: str) -> Case:
    return Case(
        name=f"dogbreed_{variant}",
        suite=SUITE,
        builder=functools.partial(build_dogbreed, variant),
        input_size=224,
        in_channels=3,
        num_classes=7,
        regime=DOGBREED_REGIME,
        reported=_dogbreed_reported(variant),
        description=description,
        log_probs=True,
        report=REPORT,
        weights=SCRATCH_FC,
    )


# MobileNet v1 is not trained by the report; a regime is still needed for the training benchmark.
MOBILENET_REGIME = Regime(
    loss="cross_entropy",
    optimizer="sgd",
    stages=(Stage(1.0, 0.01),),
    weight_decay=4e-5,
    source="Howard et al. 2017 §4 (training): MobileNet paper used RMSprop; not trained by the reports. "
    "SGD (momentum 0.9) lr 0.01 and weight decay 4e-5 (TF-slim's MobileNet default) assumed",
)

# Howard et al. 2017, Table 6 (width multiplier, 224) and Table 7 (resolution, α = 1):
# (α, input, ImageNet top-1, million mult-adds, million params, source table).
MOBILENET_V1_TABLE: tuple[tuple[float, int, float, int, float, str], ...] = (
    (1.00, 224, 0.706, 569, 4.2, "Tables 6 and 7"),
    (0.75, 224, 0.684, 325, 2.6, "Table 6"),
    (0.50, 224, 0.637, 149, 1.3, "Table 6"),
    (0.25, 224, 0.506, 41, 0.5, "Table 6"),
    (1.00, 192, 0.691, 418, 4.2, "Table 7"),
    (1.00, 160, 0.672, 290, 4.2, "Table 7"),
    (1.00, 128, 0.644, 186, 4.2, "Table 7"),
)


def _mobilenet_case(alpha: float, size: int, top1: float, mult_adds_m: int, params_m: float,
                    table: str) -> Case:
    return Case(
        name=f"mobilenet_v1_{round(alpha * 100):03d}_{size}",
        suite=SUITE,
        builder=functools.partial(build_mobilenet_v1, alpha),
        input_size=size,
        in_channels=3,
        num_classes=1000,
        regime=MOBILENET_REGIME,
        reported=Reported(
            source=f"Howard et al. 2017 (arXiv:1704.04861) {table}",
            params_approx=params_m * 1e6,
            mult_adds=mult_adds_m * 1_000_000,
            accuracy={"ImageNet": top1},
            note="the paper rounds params to 0.1M and mult-adds to 1M (conv + fc MACs, no BN); "
            "accuracy is ImageNet top-1",
        ),
        description=f"MobileNet v1, width multiplier {alpha}, input {size} (report 001's reference model)",
        report=REPORT,
        weights=SCRATCH_FC,
    )


CASES: tuple[Case, ...] = (
    _dogbreed_case("cnn", "7 × Conv3×3-BN-ReLU, GAP, Linear, LogSoftmax (report 001 §4.2.1)"),
    _dogbreed_case("dsc", "dogbreed_cnn with layers 2–7 depthwise-separable (report 001 §4.2.2)"),
    _dogbreed_case("deformable", "dogbreed_cnn with layers 2, 4, 6 DCNv1 (report 001 §4.2.3)"),
    *(_mobilenet_case(*row) for row in MOBILENET_V1_TABLE),
)
