"""Layers the suites share: deformable convolutions (v1, v2), depthwise-separable block, ECA, CBAM,
the variable-input dynamic convolution of report 002, a self-gating attention gate, MobileNet v1,
and the helper that applies a regime's freezing.

Every layer here is a plain ``nn.Module`` built from ops that ``bench.measure.flops`` can count
(convolutions, ``torchvision::deform_conv2d``, matmul/einsum); nothing runs at import.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn import init
from torchvision.ops import DeformConv2d, deform_conv2d

__all__ = [
    "CBAM",
    "ECA",
    "MOBILENET_V1_BODY",
    "AttentionGate",
    "DCNv1",
    "DCNv2",
    "DepthwiseSeparable",
    "MobileNetV1",
    "VariableInputConv",
    "conv_output_size",
    "eca_kernel_size",
    "freeze_except",
]


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial size after a convolution or pooling window (floor mode)."""
    return (size + 2 * padding - kernel_size) // stride + 1


def freeze_except(model: nn.Module, trainable: Iterable[nn.Module]) -> nn.Module:
    """Set ``requires_grad=False`` on every parameter of ``model`` except those of ``trainable``."""
    model.requires_grad_(False)
    for module in trainable:
        module.requires_grad_(True)
    return model


def _conv_like_init(weight: Tensor, bias: Tensor | None) -> None:
    # Same initialisation nn.Conv2d / DeformConv2d use, so a deformable or dynamic conv starts
    # statistically like the plain conv it stands in for.
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound)


def _zero(conv: nn.Conv2d) -> None:
    # Zero offsets (and a zero modulator logit, mask 2·sigmoid(0) = 1) make a deformable conv start as
    # the plain conv: training begins from the regular sampling grid.
    init.zeros_(conv.weight)
    if conv.bias is not None:
        init.zeros_(conv.bias)


# --------------------------------------------------------------------------------------------------
# Deformable convolutions
# --------------------------------------------------------------------------------------------------


class DCNv1(nn.Module):
    """Deformable convolution v1 (Dai et al. 2017): a plain conv predicts 2·k·k offsets per output
    location, ``torchvision.ops.DeformConv2d`` samples the input there.

    The offset conv (``offset``, always with bias) is zero-initialised, so at initialisation the layer
    is exactly the plain convolution with the weights of ``conv``. ``bias`` is the deformable conv's
    own bias (report 001 uses one, report 000 does not, as the conv it replaces has none).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.offset = nn.Conv2d(
            in_channels, 2 * kernel_size * kernel_size, kernel_size, stride, padding, bias=True
        )
        _zero(self.offset)
        self.conv = DeformConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x, self.offset(x))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> DCNv1:
        """A DCNv1 with ``conv``'s geometry whose deformable conv starts from ``conv``'s weights, so
        replacing ``conv`` changes nothing until the offsets train (report 000's setting)."""
        if conv.groups != 1 or conv.dilation != (1, 1) or conv.kernel_size[0] != conv.kernel_size[1]:
            raise ValueError("DCNv1.from_conv needs a square, ungrouped, undilated convolution")
        if conv.stride[0] != conv.stride[1] or conv.padding[0] != conv.padding[1]:  # type: ignore[index]
            raise ValueError("DCNv1.from_conv needs equal stride and padding along both axes")
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size[0],
            conv.stride[0],
            int(conv.padding[0]),  # type: ignore[index]
            bias=conv.bias is not None,
        )
        with torch.no_grad():
            layer.conv.weight.copy_(conv.weight)
            if conv.bias is not None:
                assert layer.conv.bias is not None
                layer.conv.bias.copy_(conv.bias)
        return layer


class DCNv2(nn.Module):
    """Modulated deformable convolution (DCNv2, Zhu et al. 2019), laid out as report 002 §5.2 describes:
    ``offset`` conv (2·k·k channels) and ``modulator`` conv (k·k channels, mask = 2·sigmoid), both
    zero-initialised (zero offsets, mask 1: the layer starts as the plain conv with ``weight``), feeding
    ``torchvision.ops.deform_conv2d`` with ``mask``. ``bias`` defaults to off as in that layout.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.stride, self.padding = stride, padding
        kk = kernel_size * kernel_size
        self.offset = nn.Conv2d(in_channels, 2 * kk, kernel_size, stride, padding, bias=True)
        self.modulator = nn.Conv2d(in_channels, kk, kernel_size, stride, padding, bias=True)
        _zero(self.offset)
        _zero(self.modulator)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        _conv_like_init(self.weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        mask = 2.0 * torch.sigmoid(self.modulator(x))
        return deform_conv2d(
            x, self.offset(x), self.weight, self.bias,
            stride=self.stride, padding=self.padding, mask=mask,
        )


# --------------------------------------------------------------------------------------------------
# Depthwise-separable convolution and MobileNet v1
# --------------------------------------------------------------------------------------------------


class DepthwiseSeparable(nn.Module):
    """Depthwise 3×3 conv (groups = channels) → BN → ReLU → pointwise 1×1 conv → BN → ReLU.

    ``bias`` puts a bias on both convs (report 001's DSC network has them; MobileNet has none, as BN
    follows).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> None:
        super().__init__()
        self.depthwise = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=bias),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
        )
        self.pointwise = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=bias),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


#: MobileNet body, transcribed from Howard et al. 2017 (arXiv:1704.04861), Table 1 "MobileNet Body
#: Architecture": one row per table line as (type, stride, output channels at width multiplier 1).
#: "dw" rows keep their channel count. The table's last "Conv dw / s2" row (input and output both
#: 7×7×1024) is a known misprint; every implementation, and the table's own shapes, use stride 1.
MOBILENET_V1_BODY: tuple[tuple[Literal["conv", "dw", "pw"], int, int], ...] = (
    ("conv", 2, 32),
    ("dw", 1, 32), ("pw", 1, 64),
    ("dw", 2, 64), ("pw", 1, 128),
    ("dw", 1, 128), ("pw", 1, 128),
    ("dw", 2, 128), ("pw", 1, 256),
    ("dw", 1, 256), ("pw", 1, 256),
    ("dw", 2, 256), ("pw", 1, 512),
    # "5×" rows of the table
    ("dw", 1, 512), ("pw", 1, 512),
    ("dw", 1, 512), ("pw", 1, 512),
    ("dw", 1, 512), ("pw", 1, 512),
    ("dw", 1, 512), ("pw", 1, 512),
    ("dw", 1, 512), ("pw", 1, 512),
    ("dw", 2, 512), ("pw", 1, 1024),
    ("dw", 1, 1024), ("pw", 1, 1024),  # table prints s2 here; see above
)


class MobileNetV1(nn.Module):
    """MobileNet v1 (Howard et al. 2017): 3×3 conv stride 2, 13 depthwise-separable blocks (BN + ReLU
    after every conv, no conv biases), global average pool, fully connected layer.

    ``alpha`` is the width multiplier (every channel count × alpha, truncated); the resolution
    multiplier is just the input size, as pooling is global.
    """

    def __init__(self, alpha: float = 1.0, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"width multiplier must be positive, got {alpha}")
        kind, stride, channels = MOBILENET_V1_BODY[0]
        assert kind == "conv"
        width = int(channels * alpha)
        layers: list[tuple[str, nn.Module]] = [
            ("conv0", nn.Sequential(
                nn.Conv2d(in_channels, width, 3, stride, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ))
        ]
        rows = MOBILENET_V1_BODY[1:]
        for i in range(0, len(rows), 2):
            (dw, dw_stride, dw_channels), (pw, _, pw_channels) = rows[i], rows[i + 1]
            assert dw == "dw" and pw == "pw" and int(dw_channels * alpha) == width
            out = int(pw_channels * alpha)
            layers.append((f"block{i // 2 + 1}", DepthwiseSeparable(width, out, dw_stride, bias=False)))
            width = out
        self.features = nn.Sequential(OrderedDict(layers))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


# --------------------------------------------------------------------------------------------------
# Attention modules
# --------------------------------------------------------------------------------------------------


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's adaptive kernel size: the odd number nearest ``|log2(C)/gamma + b/gamma|``
    (ties go up), computed as the reference code does: truncate, then add 1 if even."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """Efficient Channel Attention (Wang et al. 2020): global average pool → 1-D conv across channels
    (kernel :func:`eca_kernel_size`, no bias) → sigmoid → scale the input."""

    def __init__(self, channels: int, gamma: int = 2, b: int = 1) -> None:
        super().__init__()
        k = eca_kernel_size(channels, gamma, b)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = x.mean(dim=(2, 3)).unsqueeze(1)  # (B, 1, C): channels as a 1-D sequence
        y = torch.sigmoid(self.conv(y)).transpose(1, 2).unsqueeze(-1)  # (B, C, 1, 1)
        return x * y


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018): channel attention (a shared MLP of 1×1
    convs with biases over the average- and max-pooled descriptors, reduction ``reduction``) then
    spatial attention (a ``spatial_kernel``² conv without bias over the channel-wise mean and max)."""

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        x = x * torch.sigmoid(avg + mx)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class AttentionGate(nn.Module):
    """Self-gating attention (report 002's ``attention1``, "an element-wise product"):
    ``x ⊙ sigmoid(conv(ReLU(conv(x))))`` with ``depth`` same-padding convs of ``kernel_size``,
    channels kept. The gate has the shape of ``x``; the output has the shape of the input."""

    def __init__(self, channels: int, kernel_size: int = 3, depth: int = 2) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"attention gate needs at least one conv, got depth={depth}")
        layers: list[nn.Module] = []
        for i in range(depth):
            if i:
                layers.append(nn.ReLU(inplace=True))
            layers.append(nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2))
        self.gate = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(self.gate(x))


# --------------------------------------------------------------------------------------------------
# Dynamic convolution with a variable number of input channels (report 002, task I)
# --------------------------------------------------------------------------------------------------


class VariableInputConv(nn.Module):
    """A dynamic convolution that accepts 1..``max_in_channels`` input channels.

    ``num_kernels`` (K) candidate kernels of shape (out, max_in, k, k) are mixed per input by attention:
    global average pool of the input → 1×1-conv MLP (max_in → ``hidden`` → K, ReLU between) → softmax
    over K → one kernel per sample, applied as a grouped convolution over the batch (the MACs of one
    plain convolution per sample, plus the K-way kernel mix).

    Fewer channels: an input with c < max_in channels uses the first c input channels of every
    candidate kernel (slicing), and the attention MLP sees its pooled descriptor zero-padded to
    max_in — both exactly what zero-padding the missing channels would give, without computing on
    zeros. No parameter depends on c, so nothing is re-initialised. Channels are positional: a single
    channel is treated as the first one, whichever colour it was (the module is not told).
    """

    def __init__(
        self,
        max_in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        num_kernels: int = 2,
        hidden: int = 4,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if num_kernels < 1 or hidden < 1:
            raise ValueError("num_kernels and hidden must be at least 1")
        self.max_in_channels, self.out_channels = max_in_channels, out_channels
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(
            torch.empty(num_kernels, out_channels, max_in_channels, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.empty(num_kernels, out_channels)) if bias else None
        for k in range(num_kernels):
            _conv_like_init(self.weight.data[k], None if self.bias is None else self.bias.data[k])
        self.attention = nn.Sequential(
            nn.Conv2d(max_in_channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_kernels, 1),
        )

    def mixing_weights(self, x: Tensor) -> Tensor:
        """Softmax attention over the K kernels, shape (B, K)."""
        c = x.shape[1]
        pooled = F.adaptive_avg_pool2d(x, 1)
        if c < self.max_in_channels:
            pooled = F.pad(pooled, (0, 0, 0, 0, 0, self.max_in_channels - c))
        return torch.softmax(self.attention(pooled).flatten(1), dim=1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        if not 1 <= c <= self.max_in_channels:
            raise ValueError(f"VariableInputConv takes 1..{self.max_in_channels} channels, got {c}")
        attn = self.mixing_weights(x)
        k = self.weight.shape[-1]
        weight = torch.einsum("bk,koihw->boihw", attn, self.weight[:, :, :c])
        out = F.conv2d(
            x.reshape(1, b * c, h, w),
            weight.reshape(b * self.out_channels, c, k, k),
            None if self.bias is None else (attn @ self.bias).reshape(-1),
            stride=self.stride,
            padding=self.padding,
            groups=b,
        )
        return out.reshape(b, self.out_channels, out.shape[-2], out.shape[-1])
