"""Static cost of a model: parameter counts and multiply-accumulates (MACs) of one forward pass.

Counting convention (docs/metrics.md, "Counting convention") — fvcore's: one fused multiply-add = 1
MAC; ``flops = 2 × macs`` is derived elsewhere, once. Additions that are not part of a multiply-add,
biases and every op listed in :data:`IGNORED_OPS` count 0. Counted:

* convolution (``aten::_convolution``, incl. grouped/depthwise/transposed): fvcore's handle,
  ``B · prod(weight.shape) · prod(out spatial)``;
* linear / addmm / mm / matmul / bmm / einsum: fvcore's handles; ``aten::baddbmm`` added (``B·n·m·p``);
* ``aten::scaled_dot_product_attention``: QKᵀ and AV, ``N·L·S·E + N·L·S·Ev`` where ``N`` is the
  (broadcast) batch × heads of the output — i.e. ``2·B·H·L·S·E`` for equal head dims;
* ``aten::_native_multi_head_attention`` (the fused eval-mode path of ``nn.MultiheadAttention``, taken
  by torchvision's ViT whenever autograd is off or its weights are frozen): in-projection
  ``B·(L+2S)·D²`` and out-projection ``B·L·D²`` reported as ``linear``, plus QKᵀ and AV ``2·B·L·S·D``
  reported as ``scaled_dot_product_attention`` — so both attention paths give the same breakdown;
* ``torchvision::deform_conv2d`` (fvcore skips it): its GEMM ``out_elements · (C_in/groups) · kh · kw``
  as ``deform_conv2d``, plus, as ``deform_conv2d_sampling``, 4 MACs per bilinear-sampled value (one per
  batch, input channel, kernel tap and output location) and 1 more per sample when a modulation mask
  is applied (DCNv2);
* bilinear interpolation (``upsample_bilinear2d``, ``grid_sampler``): fvcore's 4 per output value,
  consistent with the deformable sampling cost.

Not counted, by decision (this is how torchvision's published GFLOPS are obtained): normalisation,
pooling, activations, softmax, elementwise arithmetic, dropout/stochastic depth, nearest-neighbour
upsampling and pure data movement. They are listed explicitly in :data:`IGNORED_OPS` so that
``unsupported_ops`` holds only real gaps: an op there means the MAC count is wrong.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

with warnings.catch_warnings():
    # fvcore.nn runs torch.jit.script on a loss at import; recent torch answers with a FutureWarning
    warnings.simplefilter("ignore", FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import (
        addmm_flop_jit,
        bmm_flop_jit,
        conv_flop_jit,
        einsum_flop_jit,
        elementwise_flop_counter,
        get_shape,
        linear_flop_jit,
        matmul_flop_jit,
    )

__all__ = [
    "IGNORED_OPS",
    "MAC_HANDLES",
    "StaticCost",
    "count_macs",
    "count_macs_by_module",
    "count_params",
    "static_cost",
]

# fvcore's handle signature: jit input values, jit output values -> count or Counter of named counts.
Handle = Callable[[list[Any], list[Any]], Union[int, float, "Counter[str]"]]


def _shape(val: Any) -> list[int]:
    shape = get_shape(val)
    if shape is None:
        raise ValueError(f"shape unknown for traced value {val.debugName()!r}; cannot count its MACs")
    return list(shape)


def _const(val: Any) -> Any:
    return val.toIValue()


def baddbmm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``baddbmm(self, b1 [B,n,m], b2 [B,m,p])``: ``B·n·m·p`` (the added term is free)."""
    b, n, m = _shape(inputs[1])
    p = _shape(inputs[2])[-1]
    return b * n * m * p


def sdpa_macs(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    """``scaled_dot_product_attention(q [...,L,E], k [...,S,E], v [...,S,Ev])``: QKᵀ + AV."""
    q, k = _shape(inputs[0]), _shape(inputs[1])
    out = _shape(outputs[0])  # [..., L, Ev]; leading dims are the broadcast batch × heads
    rows = math.prod(out[:-1])  # N·L
    s, e, ev = k[-2], q[-1], out[-1]
    return Counter({"scaled_dot_product_attention": rows * s * e + rows * s * ev})


def native_mha_macs(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    """``_native_multi_head_attention(q [B,L,D], k [B,S,D], v [B,S,D], D, H, ...)``: projections + attention.

    The fused op is only taken when q/k/v share the embedding dim D, so all projections are D×D.
    """
    q, k = _shape(inputs[0]), _shape(inputs[1])
    d = int(_const(inputs[3]))
    batch = math.prod(q[:-2])
    l, s = q[-2], k[-2]
    projections = batch * (l + 2 * s) * d * d + batch * l * d * d
    attention = 2 * batch * l * s * d  # summed over heads: H · head_dim = D
    return Counter({"linear": projections, "scaled_dot_product_attention": attention})


def deform_conv2d_macs(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
    """``torchvision::deform_conv2d(x, weight, offset, mask, bias, sh, sw, ph, pw, dh, dw, groups,
    offset_groups, use_mask)``: GEMM + bilinear sampling (+ modulation)."""
    x, w, offset = _shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2])
    use_mask = bool(_const(inputs[13]))
    batch, c_in = x[0], x[1]
    c_out, c_in_per_group, kh, kw = w
    out_hw = offset[2] * offset[3]  # offsets are predicted per output location
    gemm = batch * c_out * out_hw * c_in_per_group * kh * kw
    # im2col samples every input channel once per tap and output location, whatever the weight groups
    samples = batch * c_in * kh * kw * out_hw
    return Counter(
        {"deform_conv2d": gemm, "deform_conv2d_sampling": samples * (4 + (1 if use_mask else 0))}
    )


#: The complete op → handle table. fvcore's handles are reused where they exist; its defaults for
#: norms and pooling are deliberately left out (see :data:`IGNORED_OPS`).
MAC_HANDLES: Mapping[str, Handle] = {
    "aten::_convolution": conv_flop_jit,
    "aten::addmm": addmm_flop_jit,
    "aten::linear": linear_flop_jit,
    "aten::mm": matmul_flop_jit,
    "aten::matmul": matmul_flop_jit,
    "aten::bmm": bmm_flop_jit,
    "aten::einsum": einsum_flop_jit,
    "aten::upsample_bilinear2d": elementwise_flop_counter(0, 4),
    "aten::grid_sampler": elementwise_flop_counter(0, 4),
    "aten::baddbmm": baddbmm_macs,
    "aten::scaled_dot_product_attention": sdpa_macs,
    "aten::_native_multi_head_attention": native_mha_macs,
    "torchvision::deform_conv2d": deform_conv2d_macs,
}

#: Ops deliberately counted as 0 (on top of fvcore's own ignore list of shape/data-movement ops).
#: fvcore counts several of them by default (norms, adaptive_avg_pool2d, upsample_nearest2d); they are
#: off here because torchvision's published numbers leave them out.
IGNORED_OPS: frozenset[str] = frozenset(
    {
        # normalisation
        "aten::batch_norm",
        "aten::layer_norm",
        "aten::group_norm",
        "aten::instance_norm",
        "aten::native_layer_norm",
        "aten::norm",
        "aten::linalg_vector_norm",
        "aten::normalize",
        # pooling and reductions
        "aten::max_pool1d",
        "aten::max_pool2d",
        "aten::max_pool3d",
        "aten::max_pool2d_with_indices",
        "aten::avg_pool1d",
        "aten::avg_pool2d",
        "aten::avg_pool3d",
        "aten::adaptive_avg_pool1d",
        "aten::adaptive_avg_pool2d",
        "aten::adaptive_avg_pool3d",
        "aten::adaptive_max_pool1d",
        "aten::adaptive_max_pool2d",
        "aten::adaptive_max_pool3d",
        "aten::mean",
        "aten::sum",
        "aten::amax",
        "aten::amin",
        "aten::min",
        "aten::std",
        "aten::var",
        "aten::argmax",
        "aten::topk",
        # activations and softmax
        "aten::relu6",
        "aten::hardtanh",
        "aten::hardtanh_",
        "aten::silu",
        "aten::silu_",
        "aten::sigmoid",
        "aten::sigmoid_",
        "aten::hardsigmoid",
        "aten::hardsigmoid_",
        "aten::hardswish",
        "aten::hardswish_",
        "aten::gelu",
        "aten::gelu_",
        "aten::tanh",
        "aten::tanh_",
        "aten::leaky_relu",
        "aten::leaky_relu_",
        "aten::elu",
        "aten::elu_",
        "aten::selu",
        "aten::softplus",
        "aten::mish",
        "aten::softmax",
        "aten::log_softmax",
        "aten::_softmax",
        "aten::_log_softmax",
        # elementwise arithmetic (residual adds, SE/ECA/CBAM gating, scaling)
        "aten::add",
        "aten::add_",
        "aten::sub",
        "aten::sub_",
        "aten::rsub",
        "aten::mul",
        "aten::mul_",
        "aten::div",
        "aten::div_",
        "aten::neg",
        "aten::abs",
        "aten::pow",
        "aten::sqrt",
        "aten::rsqrt",
        "aten::exp",
        "aten::log",
        "aten::reciprocal",
        "aten::maximum",
        "aten::minimum",
        "aten::clamp_min",
        "aten::clamp_max",
        "aten::where",
        "aten::lt",
        "aten::le",
        "aten::ne",
        # dropout and stochastic depth (identity in eval; their train-mode ops listed too)
        "aten::dropout_",
        "aten::feature_dropout",
        "aten::feature_dropout_",
        "aten::alpha_dropout",
        "aten::bernoulli_",
        "aten::rand",
        "aten::rand_like",
        "aten::empty_like",
        # data movement and constructors not in fvcore's own list
        "aten::unflatten",
        "aten::repeat",
        "aten::expand_as",
        "aten::flip",
        "aten::pad",
        "aten::ones_like",
        "aten::new_ones",
        "aten::fill_",
        "aten::zero_",
        "aten::masked_fill_",
        "aten::clone",
        "aten::upsample_nearest2d",
    }
)


@dataclass
class StaticCost:
    """Parameters and forward MACs of one model at one input size (batch 1)."""

    params_total: int
    params_trainable: int
    macs_forward: int
    unsupported_ops: dict[str, int]
    macs_by_operator: dict[str, int]


def _analysis(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> FlopCountAnalysis:
    """An fvcore analysis with this module's convention, configured on the instance (no global state)."""
    analysis = FlopCountAnalysis(model, inputs)
    # set_op_handle(op, None) does not override a default handle, so start from an empty table.
    analysis.clear_op_handles()
    analysis.set_op_handle(**dict(MAC_HANDLES))
    analysis.set_op_handle(**{op: None for op in IGNORED_OPS})
    # fvcore logs skipped ops and uncalled modules; the information is returned instead.
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def count_macs(
    model: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> tuple[int, dict[str, int], dict[str, int]]:
    """Forward MACs of ``model(*inputs)`` in eval mode: (total, by operator, unsupported op → count).

    Every submodule's training flag is restored afterwards (a mix of train/eval is preserved).
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        # No autograd: cheaper tracing, and the same graph whether or not the regime freezes weights
        # (frozen ViT blocks would otherwise switch to the fused attention op while trainable ones don't).
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = _analysis(model, inputs)
            by_op = {op: int(n) for op, n in analysis.by_operator().items()}
            unsupported = {op: int(n) for op, n in analysis.unsupported_ops().items()}
    finally:
        for module, training in modes:
            module.training = training
    return sum(by_op.values()), by_op, unsupported


def count_macs_by_module(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """Forward MACs of ``model(*inputs)`` per qualified module name (``""`` is the whole model), under the
    same handles and eval-mode, no-grad convention as :func:`count_macs`: fvcore attributes each traced
    op to the module scopes it ran in, so a deformable or attention module's MACs are its own (without
    these handles fvcore counts them as zero). A module absent from the answer ran no counted op."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            by_module = _analysis(model, inputs).by_module()
    finally:
        for module, training in modes:
            module.training = training
    return {name: int(n) for name, n in by_module.items()}


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; shared parameters are counted once."""
    params = list(model.parameters())  # nn.Module.parameters() already de-duplicates shared tensors
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def static_cost(model: nn.Module, input_size: int, in_channels: int = 3) -> StaticCost:
    """Parameters and forward MACs at batch 1 on a square ``input_size`` image."""
    first: nn.Parameter | None = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    # zeros, not random: counting must not consume the global RNG stream the benchmarks are seeded from
    x = torch.zeros(1, in_channels, input_size, input_size, device=device, dtype=dtype)
    total, by_op, unsupported = count_macs(model, (x,))
    params_total, params_trainable = count_params(model)
    return StaticCost(
        params_total=params_total,
        params_trainable=params_trainable,
        macs_forward=total,
        unsupported_ops=unsupported,
        macs_by_operator=by_op,
    )
