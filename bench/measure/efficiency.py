"""Achieved TFLOP/s and model FLOPs utilisation (MFU) per phase, from MACs, batch and measured time.

Counting convention, stated up front (docs/efficiency.md gives the reasoning):

* **FLOPs = 2 × MACs.** :mod:`bench.measure.flops` counts multiply-accumulates of one forward pass per image at
  the case's input size (fvcore's convention, one fused multiply-add = 1 MAC); the factor 2 is applied
  here and nowhere else. Only what :mod:`bench.measure.flops` counts enters (convolution, linear, attention,
  deformable GEMM and sampling); normalisation, activations and the loss count 0. These are *model*
  FLOPs, the numerator of MFU, not the hardware's executed FLOPs.
* **Per phase, per round, at the measured batch** ``B``, for ``M`` MACs per image (:func:`phase_flops`):

  - ``forward   = 2·M·B·calls``, ``calls`` = model evaluations per loss (1 for cross-entropy, 3 for a
    triplet loss with anchor, positive and negative);
  - ``inference = 2·M·B``: one eval-mode call;
  - ``backward  = 2 × forward``, **an estimate**, flagged ``estimated=True``: the gradient with respect to
    the activations and the one with respect to the weights each cost about one forward (Kaplan et al.
    2020, "Scaling Laws for Neural Language Models", §2.1: forward ≈ 2N, training ≈ 6N FLOPs per token;
    Chowdhery et al. 2022, "PaLM", Appendix B, uses the same 3× for MFU). With frozen parameters the true
    cost is lower (no weight gradients there; none at all before the first trainable layer), so for a
    partially frozen regime the estimate is an upper bound;
  - ``optimizer``: not counted (``None``): an elementwise update, linear in the parameter count.
* **achieved TFLOP/s = FLOPs / seconds / 10¹²** (:func:`~bench.record.derive.achieved_tflops`), with seconds per round of that
  phase (e.g. the median sample). **MFU = achieved / peak**, a fraction (0.42, not 42 %) (:func:`~bench.record.derive.mfu`).
* **Peak** (:data:`PEAKS`, :func:`peak_for`): dense throughput — no 2:4 structured sparsity — per GPU model
  and precision, transcribed from NVIDIA's datasheets and whitepapers, each row naming its source.
  Datasheets that print only the sparse figure ("* With sparsity") are halved, and the row says so. Where
  a document distinguishes the accumulator, the FP32-accumulate figure is used, because PyTorch's cuBLAS
  half-precision GEMMs accumulate in FP32.
* **Precision key**: the precision the phase ran under. ``fp32``: FP32 without TF32 (CUDA-core peak);
  note that PyTorch enables TF32 for cuDNN convolutions by default (``torch.backends.cudnn.allow_tf32``),
  so "fp32" must mean both TF32 flags off, or the fp32 peak understates what ran. ``tf32``: the TF32
  tensor-core peak (``None`` before Ampere, where the TF32 flags have no effect: use ``fp32`` there).
  ``bf16``/``fp16`` under autocast: the 16-bit tensor-core peak (``None`` for BF16 on Volta and Turing,
  which have no BF16 tensor cores).
* **Lookup** is by the exact CUDA device name PyTorch reports
  (``torch.cuda.get_device_properties(i).name``), never by substring: "L4" is in "L40S", "A10" in
  "A100", "H100" in "H100 NVL" and "RTX 4090" in "RTX 4090 D", all different chips. An unknown name,
  a MIG slice, or a precision the row lacks gives :class:`NoPeak` with the reason.
* **CPU → no peak.** A CPU's dense matmul peak depends on the core count in use, the SIMD/matrix units
  (AVX2, AVX-512, AMX) and all-core clocks that move with load and temperature; vendors do not publish a
  per-SKU figure comparable to a GPU datasheet, and a guessed one would be a fake number.

Everything here is pure arithmetic over its arguments; nothing is read from the machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from bench.record.derive import achieved_tflops, mfu
from bench.record.schema import PHASES

__all__ = [
    "CPU_REASON",
    "PEAKS",
    "PRECISIONS",
    "GpuPeak",
    "NoPeak",
    "Peak",
    "PhaseEfficiency",
    "PhaseFlops",
    "achieved_tflops",
    "find_gpu",
    "mfu",
    "peak_for",
    "phase_efficiency",
    "phase_flops",
]

Precision = Literal["fp32", "tf32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)

CPU_REASON = (
    "no peak table for CPUs: the dense matmul peak depends on cores in use, SIMD/matrix units (AVX2, "
    "AVX-512, AMX) and load-dependent clocks, and no vendor datasheet states it per SKU"
)

# Backward ≈ 2 × forward: one forward-sized product for the activation gradients, one for the weight
# gradients (Kaplan et al. 2020 §2.1; PaLM, Chowdhery et al. 2022, Appendix B).
BACKWARD_PER_FORWARD = 2


# --- FLOPs per phase ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseFlops:
    """FLOPs of one round of a phase at the measured batch; ``value`` is ``None`` when not counted."""

    value: float | None
    estimated: bool
    note: str = ""


def phase_flops(macs_per_image: float | None, batch: int, calls: int = 1) -> dict[str, PhaseFlops]:
    """FLOPs per round for each phase in :data:`bench.record.schema.PHASES` (convention in the module docstring).

    ``macs_per_image``: forward MACs of one image at the measured input size (``None`` when the MAC count
    failed: every phase is then ``None``). ``batch``: images per round. ``calls``: model evaluations per
    loss evaluation (3 for a triplet loss).
    """
    if batch < 1 or calls < 1:
        raise ValueError(f"need batch >= 1 and calls >= 1, got batch={batch}, calls={calls}")
    not_counted = PhaseFlops(None, False, "optimizer step not counted: elementwise, linear in parameters")
    if macs_per_image is None or not math.isfinite(macs_per_image) or macs_per_image < 0:
        unknown = PhaseFlops(None, False, f"MACs per image unknown ({macs_per_image!r})")
        flops = {phase: unknown for phase in PHASES}
        flops["optimizer"] = not_counted
        return flops
    one_call = 2.0 * macs_per_image * batch
    forward = one_call * calls
    flops = {
        "forward": PhaseFlops(forward, False, f"2 x MACs x batch x {calls} call(s)"),
        "backward": PhaseFlops(
            BACKWARD_PER_FORWARD * forward, True,
            "estimated as 2 x forward (activation + weight gradients); lower with frozen parameters",
        ),
        "optimizer": not_counted,
        "inference": PhaseFlops(one_call, False, "2 x MACs x batch, one call"),
    }
    assert tuple(flops) == PHASES  # the record's phase names, in its order
    return flops


@dataclass(frozen=True)
class PhaseEfficiency:
    flops: float | None
    achieved_tflops: float | None
    mfu: float | None
    estimated: bool


def phase_efficiency(
    flops: Mapping[str, PhaseFlops], seconds: Mapping[str, float | None], peak: float | None
) -> dict[str, PhaseEfficiency]:
    """Achieved TFLOP/s and MFU for every phase in ``flops``; ``seconds[phase]`` is seconds per round
    (a missing phase counts as unknown), ``peak`` the TFLOP/s of :func:`peak_for`'s :class:`Peak` (or ``None``)."""
    out = {}
    for phase, f in flops.items():
        achieved = achieved_tflops(f.value, seconds.get(phase))
        out[phase] = PhaseEfficiency(f.value, achieved, mfu(achieved, peak), f.estimated)
    return out


# --- peak table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuPeak:
    """Dense peak TFLOP/s of one GPU model per precision (``None``: no such unit, or not sourced).

    ``arch`` is the GPU architecture (Volta and Turing have neither TF32 nor BF16 tensor cores);
    ``names`` are the exact device names PyTorch reports for this model; ``source`` is the document,
    its URL and the table the numbers come from; ``note`` says how they were read (halved, accumulator).
    """

    model: str
    arch: str
    names: tuple[str, ...]
    fp32: float | None
    tf32: float | None
    bf16: float | None
    fp16: float | None
    source: str
    note: str = ""

    def tflops(self, precision: str) -> float | None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        value: float | None = getattr(self, precision)
        return value


_A100_SOURCE = (
    "NVIDIA A100 Tensor Core GPU datasheet, https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/"
    "a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf, 'Specifications' table, rows FP32, "
    "TF32 Tensor Core, BFLOAT16 Tensor Core, FP16 Tensor Core (same figures for the SXM and PCIe columns)"
)
_A100_NOTE = "printed dense | sparse* (e.g. TF32 '156 TF | 312 TF*'): the dense figure is used"
_V100_SOURCE = (
    "NVIDIA Tesla V100 datasheet, https://images.nvidia.com/content/technologies/volta/pdf/"
    "volta-v100-datasheet-update-us-1165301-r5.pdf, 'Specifications' table, columns V100 PCIe / V100 SXM2 "
    "/ V100S PCIe, rows Single-Precision and Tensor Performance"
)
_V100_NOTE = ("Volta tensor cores are FP16 multiply with FP32 accumulate ('Tensor Performance'); no TF32, "
              "no BF16 tensor cores")
_H100_SOURCE = (
    "NVIDIA H100 Tensor Core GPU datasheet, https://resources.nvidia.com/en-us-tensor-core/"
    "nvidia-tensor-core-gpu-datasheet, 'Technical Specifications' table, column {column}, rows FP32, "
    "TF32 Tensor Core*, BFLOAT16 Tensor Core*, FP16 Tensor Core*"
)
_SPARSE_NOTE = "datasheet tensor-core figures are '* With sparsity': halved to dense ({figures})"
_H200_SOURCE = (
    "NVIDIA H200 product page, https://www.nvidia.com/en-us/data-center/h200/, 'Technical Specifications' "
    "table (marked preliminary), column {column}, rows FP32, TF32 Tensor Core, BFLOAT16 Tensor Core, FP16 "
    "Tensor Core"
)

#: Dense peak TFLOP/s per GPU model. Every number is transcribed from the document in ``source``; rows or
#: columns without a source are left out (``None``) rather than derived (e.g. TF32 as half of BF16). The
#: figures were checked against public transcriptions quoting the named tables (docs/efficiency.md lists
#: how); recheck against the PDF before relying on a row for a publication.
PEAKS: tuple[GpuPeak, ...] = (
    GpuPeak("Tesla V100 SXM2", "Volta", ("Tesla V100-SXM2-16GB", "Tesla V100-SXM2-32GB"),
            fp32=15.7, tf32=None, bf16=None, fp16=125.0, source=_V100_SOURCE, note=_V100_NOTE),
    GpuPeak("Tesla V100 PCIe", "Volta", ("Tesla V100-PCIE-16GB", "Tesla V100-PCIE-32GB"),
            fp32=14.0, tf32=None, bf16=None, fp16=112.0, source=_V100_SOURCE, note=_V100_NOTE),
    GpuPeak("Tesla V100S PCIe", "Volta", ("Tesla V100S-PCIE-32GB",),
            fp32=16.4, tf32=None, bf16=None, fp16=130.0, source=_V100_SOURCE, note=_V100_NOTE),
    GpuPeak(
        "Tesla T4", "Turing", ("Tesla T4",), fp32=8.1, tf32=None, bf16=None, fp16=65.0,
        source=("NVIDIA T4 datasheet, https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/"
                "tesla-t4/t4-tensor-core-datasheet-951643.pdf, 'Specifications' table, rows Single-Precision "
                "and Mixed-Precision (FP16/FP32)"),
        note="Turing: FP16 tensor cores with FP32 accumulate; no TF32, no BF16 tensor cores",
    ),
    GpuPeak(
        "A10", "Ampere", ("NVIDIA A10",), fp32=31.2, tf32=62.5, bf16=125.0, fp16=125.0,
        source=("NVIDIA A10 Tensor Core GPU datasheet, https://www.nvidia.com/content/dam/en-zz/Solutions/"
                "Data-Center/a10/pdf/a10-datasheet.pdf, 'Specifications' table, rows FP32, TF32 Tensor Core, "
                "BFLOAT16 Tensor Core, FP16 Tensor Core"),
        note="printed dense | sparse* (e.g. BFLOAT16 '125 TF | 250 TF*'): the dense figure is used",
    ),
    GpuPeak(
        "A10G (AWS)", "Ampere", ("NVIDIA A10G",), fp32=None, tf32=None, bf16=70.0, fp16=70.0,
        source=("NVIDIA A10G for AWS datasheet, https://d1.awsstatic.com/product-marketing/ec2/"
                "NVIDIA_AWS_A10G_DataSheet_FINAL_02_17_2022.pdf, specifications table, BF16/FP16 tensor rows "
                "(70 TF dense, 140 TF with sparsity)"),
        note=("not the A10: the A10G's tensor throughput is lower (70 vs 125 TF). Its FP32 and TF32 rows were "
              "not transcribed, so those columns are left out"),
    ),
    GpuPeak("A100 SXM4", "Ampere", ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB"),
            fp32=19.5, tf32=156.0, bf16=312.0, fp16=312.0, source=_A100_SOURCE, note=_A100_NOTE),
    GpuPeak("A100 PCIe", "Ampere", ("NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe"),
            fp32=19.5, tf32=156.0, bf16=312.0, fp16=312.0, source=_A100_SOURCE, note=_A100_NOTE),
    GpuPeak(
        "L4", "Ada", ("NVIDIA L4",), fp32=30.3, tf32=60.0, bf16=121.0, fp16=121.0,
        source=("NVIDIA L4 Tensor Core GPU datasheet, https://resources.nvidia.com/en-us-l4/l4-datasheet "
                "(same table on https://www.nvidia.com/en-us/data-center/l4/), 'Specifications', rows FP32, "
                "TF32 Tensor Core, BFLOAT16 Tensor Core, FP16 Tensor Core"),
        note=("tensor figures printed with sparsity ('Shown with sparsity. Specifications are one-half lower "
              "without sparsity'): TF32 120, BF16/FP16 242 halved to 60, 121; accumulator not stated"),
    ),
    GpuPeak(
        "L40S", "Ada", ("NVIDIA L40S",), fp32=91.6, tf32=183.0, bf16=362.05, fp16=362.05,
        source=("NVIDIA L40S datasheet, https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413 (same "
                "table on https://www.nvidia.com/en-us/data-center/l40s/), specifications table, rows FP32, "
                "TF32 Tensor Core, BFLOAT16 Tensor Core, FP16 Tensor Core"),
        note=("printed dense | sparse* ('183 | 366*', '362.05 | 733*'): the dense figure is used; the "
              "datasheet does not state the accumulator"),
    ),
    GpuPeak("H100 SXM", "Hopper", ("NVIDIA H100 80GB HBM3",), fp32=67.0, tf32=494.5, bf16=989.5, fp16=989.5,
            source=_H100_SOURCE.format(column="H100 SXM"),
            note=_SPARSE_NOTE.format(figures="TF32 989, BF16/FP16 1,979")),
    GpuPeak("H100 PCIe", "Hopper", ("NVIDIA H100 PCIe",), fp32=51.0, tf32=378.0, bf16=756.5, fp16=756.5,
            source=_H100_SOURCE.format(column="H100 PCIe (revisions before the NVL column replaced it)"),
            note=_SPARSE_NOTE.format(figures="TF32 756, BF16/FP16 1,513")),
    GpuPeak("H100 NVL", "Hopper", ("NVIDIA H100 NVL",), fp32=60.0, tf32=417.5, bf16=835.5, fp16=835.5,
            source=_H100_SOURCE.format(column="H100 NVL (per GPU)"),
            note=_SPARSE_NOTE.format(figures="TF32 835, BF16/FP16 1,671")
            + "; some earlier material quotes the two-GPU NVL pair, about twice these"),
    GpuPeak("H200 SXM", "Hopper", ("NVIDIA H200",), fp32=67.0, tf32=494.5, bf16=989.5, fp16=989.5,
            source=_H200_SOURCE.format(column="H200 SXM"),
            note=_SPARSE_NOTE.format(figures="TF32 989, BF16/FP16 1,979")),
    GpuPeak("H200 NVL", "Hopper", ("NVIDIA H200 NVL",), fp32=60.0, tf32=417.5, bf16=835.5, fp16=835.5,
            source=_H200_SOURCE.format(column="H200 NVL"),
            note=_SPARSE_NOTE.format(figures="TF32 835, BF16/FP16 1,671")),
    GpuPeak(
        "GeForce RTX 4090", "Ada", ("NVIDIA GeForce RTX 4090",), fp32=82.6, tf32=82.6, bf16=165.2, fp16=165.2,
        source=("NVIDIA Ada GPU Architecture whitepaper, https://images.nvidia.com/aem-dam/Solutions/geforce/"
                "ada/nvidia-ada-gpu-architecture.pdf, Appendix A, Table 2 (GeForce RTX 4090), rows Peak FP32 "
                "TFLOPS (non-Tensor), Peak TF32 Tensor TFLOPS, Peak BF16 Tensor TFLOPS with FP32 Accumulate, "
                "Peak FP16 Tensor TFLOPS with FP32 Accumulate"),
        note=("printed dense/sparse ('165.2/330.4'): the dense figure is used. FP16 with FP16 accumulate "
              "(330.3) is twice as fast on GeForce but is not what PyTorch's GEMMs use"),
    ),
    GpuPeak(
        "RTX A6000", "Ampere", ("NVIDIA RTX A6000",), fp32=38.7, tf32=None, bf16=154.8, fp16=154.8,
        source=("BF16/FP16: NVIDIA Ampere GA102 GPU Architecture whitepaper, https://www.nvidia.com/content/"
                "PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf, Table 3 (RTX A6000), rows Peak "
                "BF16 Tensor TFLOPS with FP32 Accumulate and Peak FP16 Tensor TFLOPS with FP32 Accumulate "
                "('154.8/309.6', dense/sparse); FP32: NVIDIA RTX A6000 datasheet, https://www.nvidia.com/"
                "content/dam/en-zz/Solutions/design-visualization/quadro-product-literature/"
                "proviz-print-nvidia-rtx-a6000-datasheet-us-nvidia-1454980-r9-web%20(1).pdf, FP32 38.7 TFLOPS"),
        note="TF32 row not transcribed, so that column is left out",
    ),
    GpuPeak(
        "RTX 6000 Ada Generation", "Ada", ("NVIDIA RTX 6000 Ada Generation",), fp32=None, tf32=None, bf16=364.0,
        fp16=None,
        source=("NVIDIA RTX PRO Blackwell GPU Architecture whitepaper, https://www.nvidia.com/content/"
                "dam/en-zz/Solutions/design-visualization/quadro-product-literature/"
                "NVIDIA-RTX-Blackwell-PRO-GPU-Architecture-v1.0.pdf, Table 4, RTX 6000 Ada column, BF16 "
                "with FP32 accumulate (364 dense / 728 sparse)"),
        note="FP32, TF32 and FP16 rows not transcribed, so those columns are left out",
    ),
)


_PRE_AMPERE = ("Volta", "Turing")


@dataclass(frozen=True)
class Peak:
    tflops: float
    gpu: GpuPeak
    precision: str


@dataclass(frozen=True)
class NoPeak:
    """No peak for this device and precision; ``reason`` says why."""

    reason: str


def find_gpu(device_name: str, table: tuple[GpuPeak, ...] = PEAKS) -> GpuPeak | None:
    """The row whose ``names`` contain ``device_name`` exactly (surrounding blanks ignored), else ``None``.

    A name in two rows is a bug in the table (tests forbid it); it is reported as no match, not guessed.
    """
    name = device_name.strip()
    rows = [row for row in table if name in row.names]
    return rows[0] if len(rows) == 1 else None


def peak_for(
    device_name: str, precision: str, *, device_type: str = "cuda", table: tuple[GpuPeak, ...] = PEAKS
) -> Peak | NoPeak:
    """The dense peak for ``precision`` on the device PyTorch names ``device_name``, or why there is none."""
    if precision not in PRECISIONS:
        return NoPeak(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if device_type != "cuda":
        return NoPeak(CPU_REASON if device_type == "cpu" else f"no peak table for device type {device_type!r}")
    if " MIG " in f" {device_name} ":
        return NoPeak(f"{device_name!r} is a MIG slice: it has a fraction of the GPU's SMs, peak not tabulated")
    gpu = find_gpu(device_name, table)
    if gpu is None:
        return NoPeak(f"no datasheet peak tabulated for {device_name!r}")
    value = gpu.tflops(precision)
    if value is None:
        if gpu.arch in _PRE_AMPERE and precision == "tf32":
            return NoPeak(f"{gpu.model} ({gpu.arch}) has no TF32 tensor cores: the TF32 flags have no effect "
                          "there, so its matmuls ran in fp32; use precision 'fp32'")
        if gpu.arch in _PRE_AMPERE and precision == "bf16":
            return NoPeak(f"{gpu.model} ({gpu.arch}) has no BF16 tensor cores")
        return NoPeak(f"{gpu.model}: no {precision} peak ({gpu.note})")
    return Peak(value, gpu, precision)
