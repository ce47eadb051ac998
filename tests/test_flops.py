"""The MAC counter against closed forms written from first principles, and against torchvision's
published GFLOPS (which are MACs: conv + linear + attention)."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import DeformConv2d, deform_conv2d

from bench.measure.flops import FlopCountAnalysis, StaticCost, count_macs, count_params, static_cost


class Call(nn.Module):
    """Wraps a function of the inputs so that it can be traced as a model."""

    def __init__(self, fn, **modules: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.mods = nn.ModuleDict(modules)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.fn(self.mods, *xs)


def macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    total, _, unsupported = count_macs(model, inputs)
    assert unsupported == {}
    return total


def conv_out(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


# --- convolution -------------------------------------------------------------------------------------


def test_conv_with_stride_and_padding() -> None:
    b, c_in, c_out, h, w, k, s, p = 2, 3, 8, 9, 11, 3, 2, 1
    ho, wo = conv_out(h, k, s, p), conv_out(w, k, s, p)
    conv = nn.Conv2d(c_in, c_out, k, stride=s, padding=p)
    assert macs(conv, torch.zeros(b, c_in, h, w)) == b * c_out * ho * wo * c_in * k * k


@pytest.mark.parametrize("c_in,c_out,groups", [(8, 12, 4), (8, 8, 8)], ids=["grouped", "depthwise"])
def test_grouped_and_depthwise_conv(c_in: int, c_out: int, groups: int) -> None:
    b, h, w, k = 2, 6, 5, 3
    conv = nn.Conv2d(c_in, c_out, k, padding=1, groups=groups)
    # each output value reads only its group's c_in / groups channels
    assert macs(conv, torch.zeros(b, c_in, h, w)) == b * c_out * h * w * (c_in // groups) * k * k


# --- linear / matmul ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 16), (2, 5, 16)])
def test_linear(shape: tuple[int, ...]) -> None:
    rows = 1
    for n in shape[:-1]:
        rows *= n
    assert macs(nn.Linear(16, 10), torch.zeros(shape)) == rows * 16 * 10


def test_matmul_and_bmm() -> None:
    a, b = torch.zeros(3, 4, 5), torch.zeros(5, 6)
    assert macs(Call(lambda m, x, y: x @ y), a, b) == 3 * 4 * 5 * 6
    c = torch.zeros(3, 5, 6)
    assert macs(Call(lambda m, x, y: torch.bmm(x, y)), a, c) == 3 * 4 * 5 * 6
    bias = torch.zeros(3, 4, 6)
    assert macs(Call(lambda m, z, x, y: torch.baddbmm(z, x, y)), bias, a, c) == 3 * 4 * 5 * 6


# --- attention ---------------------------------------------------------------------------------------


def test_scaled_dot_product_attention() -> None:
    b, h, l, s, e, ev = 2, 3, 5, 7, 4, 6
    q, k, v = torch.zeros(b, h, l, e), torch.zeros(b, h, s, e), torch.zeros(b, h, s, ev)
    model = Call(lambda m, q, k, v: F.scaled_dot_product_attention(q, k, v))
    total, by_op, unsupported = count_macs(model, (q, k, v))
    qk, av = b * h * l * s * e, b * h * l * s * ev  # scores L×S per head, then weights × values
    assert unsupported == {}
    assert total == by_op["scaled_dot_product_attention"] == qk + av


@pytest.mark.parametrize(
    "batch_first,cross,need_weights",
    [(True, False, False), (False, True, False), (False, True, True)],
    # eval + no grad + batch_first self-attention takes the fused aten::_native_multi_head_attention;
    # the others go through linear + scaled_dot_product_attention, or bmm when weights are returned
    ids=["fused_native_mha", "sdpa_path", "bmm_path"],
)
def test_multihead_attention(batch_first: bool, cross: bool, need_weights: bool) -> None:
    b, l, s, d, heads = 2, 5, 7 if cross else 5, 8, 2
    mha = nn.MultiheadAttention(d, heads, batch_first=batch_first)
    q = torch.zeros((b, l, d) if batch_first else (l, b, d))
    kv = torch.zeros((b, s, d) if batch_first else (s, b, d)) if cross else q
    model = Call(lambda m, q, kv: m["mha"](q, kv, kv, need_weights=need_weights)[0], mha=mha)
    in_proj = b * l * d * d + 2 * b * s * d * d  # q from the L queries, k and v from the S keys
    attention = 2 * b * l * s * d  # QKᵀ and AV, summed over heads (heads × head_dim = d)
    out_proj = b * l * d * d
    assert macs(model, q, kv) == in_proj + attention + out_proj


# --- deformable convolution --------------------------------------------------------------------------

B, C_IN, C_OUT, H, W, K, STRIDE, PAD = 2, 4, 6, 7, 8, 3, 2, 1
HO, WO = conv_out(H, K, STRIDE, PAD), conv_out(W, K, STRIDE, PAD)
GEMM = B * C_OUT * HO * WO * C_IN * K * K  # as the plain conv it replaces
SAMPLES = B * C_IN * K * K * HO * WO  # one bilinear sample per (batch, channel, tap, output location)


def _deform_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(B, C_IN, H, W), torch.zeros(B, 2 * K * K, HO, WO)


def _deform_v1() -> nn.Module:
    return Call(lambda m, x, off: m["dcn"](x, off), dcn=DeformConv2d(C_IN, C_OUT, K, STRIDE, PAD))


def test_deform_conv_v1() -> None:
    total, by_op, _ = count_macs(_deform_v1(), _deform_inputs())
    assert by_op["deform_conv2d"] == GEMM
    assert total == GEMM + 4 * SAMPLES  # bilinear interpolation: 4 MACs per sampled value


def test_deform_conv_v2_with_mask() -> None:
    def fn(m: nn.ModuleDict, x: torch.Tensor, off: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return deform_conv2d(x, off, m["dcn"].weight, stride=STRIDE, padding=PAD, mask=mask)

    model = Call(fn, dcn=DeformConv2d(C_IN, C_OUT, K, STRIDE, PAD, bias=False))
    x, off = _deform_inputs()
    mask = torch.zeros(B, K * K, HO, WO)
    assert macs(model, x, off, mask) == GEMM + (4 + 1) * SAMPLES  # + 1 to modulate each sample


def test_fvcore_alone_counts_deform_conv_as_zero() -> None:
    """The trap this module exists for: fvcore skips torchvision::deform_conv2d and only warns."""
    analysis = FlopCountAnalysis(_deform_v1(), _deform_inputs())
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert analysis.total() == 0
    assert analysis.unsupported_ops()["torchvision::deform_conv2d"] == 1


@pytest.mark.parametrize(
    "grad,op", [(True, "aten::scaled_dot_product_attention"), (False, "aten::_native_multi_head_attention")]
)
def test_fvcore_alone_misses_attention(grad: bool, op: str) -> None:
    """torchvision's ViT attention (batch-first self-attention) traces to SDPA with autograd on and
    trainable weights, and to the fused native op otherwise (no_grad or frozen); fvcore has neither."""
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    model = Call(lambda m, x: m["mha"](x, x, x, need_weights=False)[0], mha=mha)
    with torch.set_grad_enabled(grad):
        analysis = FlopCountAnalysis(model, (torch.zeros(2, 5, 8),))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analysis.total()  # fvcore only answers unsupported_ops() after an analysis has run
        assert analysis.unsupported_ops()[op] == 1


# --- behaviour of the API ----------------------------------------------------------------------------


def test_small_vit_is_fully_counted() -> None:
    img, patch, layers, heads, d, mlp, classes = 32, 8, 2, 2, 16, 32, 5
    vit = torchvision.models.VisionTransformer(img, patch, layers, heads, d, mlp, num_classes=classes)
    n = (img // patch) ** 2
    t = n + 1  # patches + class token
    per_layer = 4 * t * d * d + 2 * t * t * d + 2 * t * d * mlp  # qkv + out proj, attention, MLP
    expected = n * d * 3 * patch * patch + layers * per_layer + d * classes
    assert macs(vit, torch.zeros(1, 3, img, img)) == expected


def test_count_macs_restores_training_flags() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(64, 2)
    )
    model.train()
    model[1].eval()  # e.g. a frozen BatchNorm inside a training model must stay frozen
    before = [m.training for m in model.modules()]
    eval_total = macs(model.eval(), torch.zeros(1, 3, 6, 6))
    model.train()
    model[1].eval()
    assert macs(model, torch.zeros(1, 3, 6, 6)) == eval_total
    assert [m.training for m in model.modules()] == before


def test_unsupported_ops_are_reported_silently(capfd: pytest.CaptureFixture[str], caplog) -> None:
    model = Call(lambda m, x: m["conv"](x).cumsum(1), conv=nn.Conv2d(2, 2, 1))
    with caplog.at_level(logging.DEBUG):
        total, _, unsupported = count_macs(model, (torch.zeros(1, 2, 3, 3),))
    assert total == 2 * 2 * 9
    assert unsupported == {"aten::cumsum": 1}
    assert caplog.records == []
    assert capfd.readouterr() == ("", "")


def test_count_params_and_static_cost() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    model[0].weight.requires_grad_(False)
    assert count_params(model) == (4 * 3 * 9 + 144 * 2 + 2, 144 * 2 + 2)
    cost = static_cost(model, 8)
    assert cost == StaticCost(
        params_total=4 * 3 * 9 + 144 * 2 + 2,
        params_trainable=144 * 2 + 2,
        macs_forward=4 * 36 * 3 * 9 + 144 * 2,
        unsupported_ops={},
        macs_by_operator={"conv": 4 * 36 * 3 * 9, "linear": 144 * 2},
    )


# --- torchvision's published numbers -----------------------------------------------------------------

W_ = torchvision.models
PUBLISHED = [
    pytest.param(W_.resnet18, W_.ResNet18_Weights.IMAGENET1K_V1, id="resnet18"),
    pytest.param(W_.resnet50, W_.ResNet50_Weights.IMAGENET1K_V1, id="resnet50", marks=pytest.mark.slow),
    pytest.param(W_.efficientnet_b0, W_.EfficientNet_B0_Weights.IMAGENET1K_V1, id="efficientnet_b0"),
    pytest.param(W_.mobilenet_v2, W_.MobileNet_V2_Weights.IMAGENET1K_V1, id="mobilenet_v2"),
    pytest.param(W_.vit_b_16, W_.ViT_B_16_Weights.IMAGENET1K_V1, id="vit_b_16", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("builder,weights", PUBLISHED)
def test_torchvision_published_gflops(builder, weights) -> None:
    published = weights.meta["_ops"]  # static metadata: reading it downloads nothing
    cost = static_cost(builder(weights=None), 224)
    assert cost.unsupported_ops == {}
    assert cost.macs_forward / 1e9 == pytest.approx(published, rel=0.005)
    assert cost.params_total == weights.meta["num_params"]
