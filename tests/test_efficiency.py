"""FLOPs per phase, achieved TFLOP/s, MFU, and the peak table's integrity and lookup."""

from __future__ import annotations

import math

import pytest

from bench.measure.efficiency import (
    CPU_REASON,
    PEAKS,
    PRECISIONS,
    GpuPeak,
    NoPeak,
    Peak,
    PhaseFlops,
    achieved_tflops,
    find_gpu,
    mfu,
    peak_for,
    phase_efficiency,
    phase_flops,
)
from bench.record.schema import PHASES

# --- phase FLOPs --------------------------------------------------------------------------------------


def _tflops(name: str, precision: str, device_type: str = "cuda") -> float | None:
    peak = peak_for(name, precision, device_type=device_type)
    return peak.tflops if isinstance(peak, Peak) else None


def test_phase_flops_arithmetic() -> None:
    macs, batch = 4_100_000_000, 32  # about ResNet-50 at 224 px
    flops = phase_flops(macs, batch)
    assert tuple(flops) == PHASES
    assert flops["forward"] == PhaseFlops(2 * macs * batch, False, flops["forward"].note)
    assert flops["inference"].value == 2 * macs * batch
    assert flops["backward"].value == 2 * 2 * macs * batch
    assert flops["optimizer"].value is None and not flops["optimizer"].estimated


def test_calls_multiply_forward_and_backward_but_not_inference() -> None:
    flops = phase_flops(1000, batch=8, calls=3)  # triplet loss: anchor, positive, negative
    assert flops["forward"].value == 2 * 1000 * 8 * 3
    assert flops["backward"].value == 2 * flops["forward"].value  # type: ignore[operator]
    assert flops["inference"].value == 2 * 1000 * 8


def test_backward_is_flagged_as_an_estimate_and_nothing_else_is() -> None:
    flops = phase_flops(10, 2)
    assert [p for p, f in flops.items() if f.estimated] == ["backward"]
    assert "estimated" in flops["backward"].note


@pytest.mark.parametrize("macs", [None, float("nan"), -1])
def test_unknown_macs_propagate_as_none(macs: float | None) -> None:
    flops = phase_flops(macs, 4)
    assert all(f.value is None for f in flops.values())
    assert "unknown" in flops["forward"].note


def test_phase_flops_refuses_an_empty_batch() -> None:
    with pytest.raises(ValueError):
        phase_flops(10, 0)
    with pytest.raises(ValueError):
        phase_flops(10, 1, calls=0)


# --- achieved TFLOP/s and MFU -------------------------------------------------------------------------


def test_achieved_tflops_and_mfu_arithmetic() -> None:
    achieved = achieved_tflops(3e12, 0.02)  # 3 TFLOP in 20 ms
    assert achieved == pytest.approx(150.0)
    assert mfu(achieved, 312.0) == pytest.approx(150.0 / 312.0)


@pytest.mark.parametrize(
    "flops,seconds", [(None, 1.0), (1e12, None), (1e12, 0.0), (1e12, -1.0), (math.nan, 1.0), (1e12, math.inf)]
)
def test_achieved_tflops_none_when_undefined(flops: float | None, seconds: float | None) -> None:
    assert achieved_tflops(flops, seconds) is None


@pytest.mark.parametrize("achieved,peak", [(None, 312.0), (100.0, None), (100.0, 0.0), (math.nan, 312.0)])
def test_mfu_none_when_undefined(achieved: float | None, peak: float | None) -> None:
    assert mfu(achieved, peak) is None


def test_phase_efficiency_propagates_none_per_phase() -> None:
    flops = phase_flops(1e9, 10)  # forward 2e10 FLOPs
    eff = phase_efficiency(flops, {"forward": 1e-3, "backward": 2e-3, "inference": None}, peak=100.0)
    assert eff["forward"].achieved_tflops == pytest.approx(20.0) and eff["forward"].mfu == pytest.approx(0.2)
    assert eff["backward"].achieved_tflops == pytest.approx(20.0) and eff["backward"].estimated
    assert eff["optimizer"].achieved_tflops is None and eff["optimizer"].mfu is None
    assert eff["inference"].achieved_tflops is None  # no time measured
    no_peak = phase_efficiency(flops, {"forward": 1e-3}, peak=None)
    assert no_peak["forward"].achieved_tflops == pytest.approx(20.0) and no_peak["forward"].mfu is None


# --- the peak table -----------------------------------------------------------------------------------


@pytest.mark.parametrize("row", PEAKS, ids=[row.model for row in PEAKS])
def test_every_row_names_its_source(row: GpuPeak) -> None:
    assert "https://" in row.source, row.model
    assert row.names, row.model
    assert any(row.tflops(p) is not None for p in PRECISIONS), f"{row.model} has no number at all"
    for precision in PRECISIONS:
        value = row.tflops(precision)
        assert value is None or (math.isfinite(value) and value > 0)


@pytest.mark.parametrize("row", PEAKS, ids=[row.model for row in PEAKS])
def test_dense_peaks_are_ordered_like_the_hardware(row: GpuPeak) -> None:
    # tensor cores beat CUDA cores, and 16-bit beats TF32: a sparse figure copied by mistake, or a swapped
    # column, breaks one of these
    values = [row.fp32, row.tf32, row.bf16]
    known = [v for v in values if v is not None]
    assert known == sorted(known)
    if row.bf16 is not None and row.fp16 is not None:
        assert row.bf16 == row.fp16


def test_no_device_name_is_in_two_rows() -> None:
    names = [name for row in PEAKS for name in row.names]
    assert len(names) == len(set(names))
    assert len({row.model for row in PEAKS}) == len(PEAKS)


TORCH_NAMES = {
    # name as torch.cuda.get_device_properties(i).name reports it -> model of the row it must resolve to
    "Tesla V100-SXM2-16GB": "Tesla V100 SXM2",
    "Tesla V100-SXM2-32GB": "Tesla V100 SXM2",
    "Tesla V100-PCIE-16GB": "Tesla V100 PCIe",
    "Tesla V100-PCIE-32GB": "Tesla V100 PCIe",
    "Tesla V100S-PCIE-32GB": "Tesla V100S PCIe",
    "Tesla T4": "Tesla T4",
    "NVIDIA A10": "A10",
    "NVIDIA A10G": "A10G (AWS)",
    "NVIDIA A100-SXM4-40GB": "A100 SXM4",
    "NVIDIA A100-SXM4-80GB": "A100 SXM4",
    "NVIDIA A100-PCIE-40GB": "A100 PCIe",
    "NVIDIA A100 80GB PCIe": "A100 PCIe",
    "NVIDIA L4": "L4",
    "NVIDIA L40S": "L40S",
    "NVIDIA H100 80GB HBM3": "H100 SXM",
    "NVIDIA H100 PCIe": "H100 PCIe",
    "NVIDIA H100 NVL": "H100 NVL",
    "NVIDIA H200": "H200 SXM",
    "NVIDIA H200 NVL": "H200 NVL",
    "NVIDIA GeForce RTX 4090": "GeForce RTX 4090",
    "NVIDIA RTX A6000": "RTX A6000",
    "NVIDIA RTX 6000 Ada Generation": "RTX 6000 Ada Generation",
}


@pytest.mark.parametrize("name,model", TORCH_NAMES.items())
def test_each_torch_name_resolves_to_exactly_one_row(name: str, model: str) -> None:
    assert [row.model for row in PEAKS if name in row.names] == [model]
    row = find_gpu(name)
    assert row is not None and row.model == model
    assert find_gpu(f"  {name}\n") == row  # surrounding blanks as some drivers print them


def test_every_listed_name_is_exercised() -> None:
    assert {name for row in PEAKS for name in row.names} == set(TORCH_NAMES)


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA L40",  # not the L40S (half its tensor rate)
        "NVIDIA GeForce RTX 4090 D",  # China variant, fewer SMs
        "NVIDIA GeForce RTX 4090 Laptop GPU",
        "NVIDIA A100X",
        "NVIDIA H100",  # no form factor in the name: SXM or PCIe unknown
        "NVIDIA H800",
        "Tesla V100-SXM3-32GB",  # DGX-2 part, higher clocks than the SXM2 datasheet
        "nvidia a100-sxm4-80gb",  # exact names only, case included
        "",
    ],
)
def test_variants_without_a_row_are_not_confused_with_one(name: str) -> None:
    assert find_gpu(name) is None
    assert isinstance(peak_for(name, "bf16"), NoPeak)


def test_peak_lookup_by_precision() -> None:
    assert _tflops("NVIDIA A100-SXM4-80GB", "fp32") == 19.5
    assert _tflops("NVIDIA A100-SXM4-80GB", "tf32") == 156.0
    assert _tflops("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert _tflops("NVIDIA H100 80GB HBM3", "fp16") == 989.5  # 1,979 "with sparsity", halved
    assert _tflops("NVIDIA H100 PCIe", "bf16") == 756.5
    assert _tflops("NVIDIA GeForce RTX 4090", "fp16") == 165.2  # FP32 accumulate, not 330.3
    peak = peak_for("NVIDIA L4", "bf16")
    assert isinstance(peak, Peak) and peak.tflops == 121.0 and peak.gpu.model == "L4"


def test_pre_ampere_tf32_and_bf16_have_no_peak_with_a_reason() -> None:
    tf32 = peak_for("Tesla T4", "tf32")
    assert isinstance(tf32, NoPeak) and "no TF32 tensor cores" in tf32.reason and "'fp32'" in tf32.reason
    bf16 = peak_for("Tesla V100-SXM2-16GB", "bf16")
    assert isinstance(bf16, NoPeak) and "no BF16 tensor cores" in bf16.reason
    assert _tflops("Tesla V100-SXM2-16GB", "fp16") == 125.0


def test_unsourced_column_is_none_with_the_rows_note() -> None:
    a10g = peak_for("NVIDIA A10G", "fp32")
    assert isinstance(a10g, NoPeak) and "not transcribed" in a10g.reason
    assert _tflops("NVIDIA A10G", "bf16") == 70.0


def test_unknown_device_precision_cpu_and_mig_have_no_peak() -> None:
    unknown = peak_for("NVIDIA Imaginary 9000", "fp32")
    assert isinstance(unknown, NoPeak) and "Imaginary" in unknown.reason
    precision = peak_for("NVIDIA L4", "fp8")
    assert isinstance(precision, NoPeak) and "unknown precision" in precision.reason
    cpu = peak_for("AMD EPYC 7B13", "fp32", device_type="cpu")
    assert cpu == NoPeak(CPU_REASON)
    assert _tflops("AMD EPYC 7B13", "fp32", device_type="cpu") is None
    mig = peak_for("NVIDIA A100-SXM4-40GB MIG 3g.20gb", "bf16")
    assert isinstance(mig, NoPeak) and "MIG" in mig.reason


def test_end_to_end_mfu_from_macs_time_and_device_name() -> None:
    flops = phase_flops(4.1e9, 256)  # forward 2.0992e12 FLOPs
    peak = _tflops("NVIDIA A100-SXM4-40GB", "bf16")
    eff = phase_efficiency(flops, {"forward": 0.02}, peak)
    assert eff["forward"].achieved_tflops == pytest.approx(104.96)
    assert eff["forward"].mfu == pytest.approx(104.96 / 312.0)
