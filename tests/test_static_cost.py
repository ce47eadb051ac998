"""Static cost of every registered case: fully counted, and deformable variants cost what they should
relative to their plain twins."""

from __future__ import annotations

import functools

import pytest

from bench.measure.flops import StaticCost, static_cost
from suites import registry

CASES = list(registry())
BIG = ("resnet50", "vit", "resnet34")  # builds and traces in seconds each on 2 CPU cores


def _param(name: str, *rest: str) -> object:
    slow = any(b in n for n in (name, *rest) for b in BIG)
    return pytest.param(name, *rest, id=name, marks=[pytest.mark.slow] if slow else [])


@functools.cache
def cost(name: str) -> StaticCost:
    case = registry()[name]
    return static_cost(case.build(), case.input_size, case.in_channels)


def is_deformable(name: str) -> bool:
    return ("dcn" in name or "deform" in name) and name != "resnet50_dcn_0000"  # 0000: no DCN block


@pytest.mark.parametrize("name", [_param(n) for n in CASES])
def test_every_case_is_fully_counted(name: str) -> None:
    c = cost(name)
    assert c.unsupported_ops == {}, "ops the counter cannot count: the MAC number would be wrong"
    assert c.macs_forward > 0
    assert (c.macs_by_operator.get("deform_conv2d", 0) > 0) == is_deformable(name)


# A replacement swaps a conv for an offset conv + a deformable conv of the same shape (whose GEMM equals
# the replaced conv), so it costs more by the offset convs + the sampling; an addition costs the whole
# deformable layer (GEMM + sampling) on top of the twin.
REPLACEMENTS = [(n, "resnet50_dcn_0000") for n in CASES if n.startswith("resnet50_dcn_") and is_deformable(n)]
REPLACEMENTS += [("dogbreed_deformable", "dogbreed_cnn")]
ADDITIONS = [
    ("flowers_resnet18_deform_after_conv1", "flowers_resnet18"),
    ("flowers_resnet18_conv1_plus_deform", "flowers_resnet18"),
]


@pytest.mark.parametrize("deformable,twin", [_param(a, b) for a, b in REPLACEMENTS])
def test_deformable_replacement_costs_more_than_its_twin(deformable: str, twin: str) -> None:
    d, t = cost(deformable), cost(twin)
    sampling = d.macs_by_operator["deform_conv2d_sampling"]
    assert d.macs_by_operator["conv"] + d.macs_by_operator["deform_conv2d"] > t.macs_by_operator["conv"]
    assert d.macs_forward - t.macs_forward > sampling > 0


@pytest.mark.parametrize("deformable,twin", [_param(a, b) for a, b in ADDITIONS])
def test_deformable_addition_costs_at_least_its_layer(deformable: str, twin: str) -> None:
    d, t = cost(deformable), cost(twin)
    layer = d.macs_by_operator["deform_conv2d"] + d.macs_by_operator["deform_conv2d_sampling"]
    assert d.macs_forward - t.macs_forward >= layer > 0
