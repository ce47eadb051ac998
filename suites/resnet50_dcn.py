"""Report 000, "CZ4042: Group Project" (Kee Kai Teng, Zhong Shaojie, Darryl Chia Shen Yang, Nanyang
Technological University): deformable convolution v1 in ResNet-50, FashionMNIST and CIFAR-10.
docs/cases.md, "Report 000", has the cases and where each number comes from.

Config ``abcd``: in stages conv2_x..conv5_x (torchvision ``layer1..layer4``) the LAST a/b/c/d
bottleneck blocks get their 3×3 ``conv2`` replaced by :class:`~suites.layers.DCNv1` (offset conv with
bias, zero-initialised; deformable conv without bias, same stride, starting from the replaced conv's
weights). torchvision ResNet-50 puts the stride on the 3×3 conv, as the report's model does.

Input 224×224×3 (FashionMNIST's grayscale repeated to 3 channels), 10 classes. Regime ("Training"
section): pretrained backbone frozen, trainable = offset convs + deformable convs + fc; phase 1 lr 1e-3,
phase 2 lr 1e-4, each ≤50 epochs with early stopping (patience 5).

The report's tables title the parameter column "No. of Trainable Parameters" but list the total count
(the backbone is frozen): 23,528,522 for ``0000`` is ResNet-50 with a 10-class fc, all parameters.
"""

from __future__ import annotations

import functools

import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights

from suites.case import Case, Regime, Reported, Stage, WeightsMap
from suites.layers import DCNv1, freeze_except

__all__ = [
    "CASES", "REPORT", "STAGE_BLOCKS", "SUITE", "build", "case_for", "deformable_blocks", "parse_config", "resolve",
    "weights_map",
]

SUITE = "resnet50_dcn"
REPORT = ("000: 'CZ4042: Group Project', Kee Kai Teng, Zhong Shaojie, Darryl Chia Shen Yang "
          "(Nanyang Technological University)")

#: Bottleneck blocks per stage of ResNet-50 (report 000 Figure 1, 50-layer column): the upper bounds
#: of a, b, c, d.
STAGE_BLOCKS: tuple[int, int, int, int] = (3, 4, 6, 3)

REGIME = Regime(
    loss="cross_entropy",
    optimizer="adam",
    stages=(Stage(0.5, 1e-3), Stage(0.5, 1e-4)),
    patience=5,
    source="000 'Training': phase 1 lr 1e-3, phase 2 lr 1e-4, ≤50 epochs each, early stopping "
    "patience 5, offsets + deformable convs + fc unfrozen; optimiser not stated; Adam assumed",
)


def parse_config(config: str) -> tuple[int, int, int, int]:
    """``"abcd"`` → (a, b, c, d), checked against :data:`STAGE_BLOCKS`."""
    limits = ", ".join(f"{n}<={m}" for n, m in zip("abcd", STAGE_BLOCKS))
    if len(config) != 4 or not config.isdigit() or not config.isascii():
        raise ValueError(
            f"resnet50_dcn config must be 4 digits 'abcd' (deformable blocks in layer1..layer4, "
            f"{limits}); got {config!r}"
        )
    counts = tuple(int(ch) for ch in config)
    over = [f"{n}={v} > {m}" for n, v, m in zip("abcd", counts, STAGE_BLOCKS) if v > m]
    if over:
        raise ValueError(
            f"resnet50_dcn config {config!r}: {', '.join(over)} — ResNet-50 stages have "
            f"{STAGE_BLOCKS} blocks ({limits})"
        )
    return counts  # type: ignore[return-value]


def deformable_blocks(config: str) -> list[str]:
    """Module names of the bottlenecks whose ``conv2`` is deformable, e.g. ``"layer4.2"``."""
    return [
        f"layer{stage}.{index}"
        for stage, (n, blocks) in enumerate(zip(parse_config(config), STAGE_BLOCKS), start=1)
        for index in range(blocks - n, blocks)
    ]


def build(config: str, num_classes: int = 10, image_size: int = 224) -> nn.Module:
    """ResNet-50 with the last a/b/c/d blocks' ``conv2`` deformable, backbone frozen.

    ``image_size`` does not change any parameter and is ignored.
    """
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    dcns: list[nn.Module] = []
    for name in deformable_blocks(config):
        block = model.get_submodule(name)
        block.conv2 = DCNv1.from_conv(block.conv2)
        dcns.append(block.conv2)
    return freeze_except(model, [*dcns, model.fc])


def weights_map(config: str) -> WeightsMap:
    """Report 000's backbone: "the ResNet50 model in PyTorch … pre-trained on ImageNet", i.e. what the
    2023 ``pretrained=True`` gave, ``IMAGENET1K_V1`` (``DEFAULT`` is now V2, a later training recipe).
    Each deformable conv starts from the pretrained ``conv2`` it replaces, its offset conv stays at zero
    (so the block starts as the pretrained one), and fc is re-initialised for the run's classes."""
    blocks = deformable_blocks(config)
    return WeightsMap(
        head="fc",
        pretrained=ResNet50_Weights.IMAGENET1K_V1,
        renames=tuple((f"{b}.conv2.", f"{b}.conv2.conv.") for b in blocks),
        new=tuple(f"{b}.conv2.offset.*" for b in blocks),
        why="000 'Training': the ResNet50 model in PyTorch pre-trained on ImageNet (pretrained=True in 2023: "
        "IMAGENET1K_V1); deformable convs from the conv2 they replace, offsets zero",
    )


# Report 000 Tables 1 and 2: (test accuracy, test cross-entropy loss, s/epoch) per dataset, and the
# parameter count the tables give (with Table 1's relative increase over 0000, in %).
_TABLE = {
    "0000": ("000 Table 1", 23_528_522, 0.00, {
        "FashionMNIST": (0.8539, 1.6131, 146.59), "CIFAR-10": (0.8196, 1.6505, 118.43)}),
    "0001": ("000 Table 1", 23_611_484, 0.35, {
        "FashionMNIST": (0.8585, 1.6085, 156.78), "CIFAR-10": (0.8184, 1.6560, 128.30)}),
    "0011": ("000 Table 1", 23_652_974, 0.52, {
        "FashionMNIST": (0.8589, 1.6123, 191.64), "CIFAR-10": (0.7878, 1.6883, 153.94)}),
    "0002": ("000 Table 1", 23_694_446, 0.70, {
        "FashionMNIST": (0.8505, 1.6156, 171.56), "CIFAR-10": (0.8020, 1.6770, 140.34)}),
    "3000": ("000 Table 2", 23_559_680, None, {"FashionMNIST": (0.8006, 1.6644, 399.52)}),
    "0300": ("000 Table 2", 23_590_784, None, {"FashionMNIST": (0.8241, 1.6464, 275.20)}),
    "0030": ("000 Table 2", 23_652_992, None, {"FashionMNIST": (0.8300, 1.6417, 211.13)}),
    "0003": ("000 Table 2", 23_777_408, None, {"FashionMNIST": (0.7516, 1.7288, 183.02)}),
}

#: The configurations the report trained, in its table order.
REPORTED_CONFIGS: tuple[str, ...] = tuple(_TABLE)


def _reported(config: str) -> Reported:
    if config not in _TABLE:
        return Reported(source="000: configuration not in the report")
    source, params, increase, rows = _TABLE[config]
    extra = {f"test_loss/{ds}": loss for ds, (_, loss, _) in rows.items()}
    if increase is not None:
        extra["params_increase_pct"] = increase
    return Reported(
        source=source,
        params=params,
        accuracy={ds: acc for ds, (acc, _, _) in rows.items()},
        seconds_per_epoch={ds: sec for ds, (_, _, sec) in rows.items()},
        extra=extra,
        note="test accuracy and average training seconds per epoch (their GPU); the parameter column "
        "is headed 'trainable' but holds the total count",
    )


def case_for(config: str) -> Case:
    """The case ``resnet50_dcn_<config>`` for any valid ``abcd`` (ValueError otherwise)."""
    a, b, c, d = parse_config(config)
    return Case(
        name=f"{SUITE}_{config}",
        suite=SUITE,
        builder=functools.partial(build, config),
        input_size=224,
        in_channels=3,
        num_classes=10,
        regime=REGIME,
        reported=_reported(config),
        description=f"ResNet-50, last {a}/{b}/{c}/{d} blocks of layer1..4 with DCNv1 conv2; "
        "backbone frozen",
        report=REPORT,
        weights=weights_map(config),
    )


def resolve(name: str) -> Case | None:
    """Any ``resnet50_dcn_abcd`` by name (ValueError for an invalid ``abcd``); ``None`` for other names."""
    prefix = f"{SUITE}_"
    return case_for(name.removeprefix(prefix)) if name.startswith(prefix) else None


CASES: tuple[Case, ...] = tuple(case_for(config) for config in REPORTED_CONFIGS)
