"""What a step record derives from its raw samples: the medians, throughputs, achieved TFLOP/s and MFU.

Derived once, here, from the fields a measurement stored (samples, batch size, FLOPs per round, the
datasheet peak), by whoever assembles the record: the measurement session for ``pytest bench/`` and
``bench profile``, and ``bench ab`` after it has gathered the rounds of every worker process. So a median,
a throughput or an MFU means the same thing whichever command wrote the file.

Conventions (docs/efficiency.md): achieved TFLOP/s = FLOPs of one round / median seconds of that phase /
10¹²; MFU = achieved / peak, a fraction; the whole step's FLOPs are forward + backward (the optimizer
step is not counted).
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from bench.record.schema import EFFICIENCY, PHASES, Record, quantity


def achieved_tflops(flops: float | None, seconds: float | None) -> float | None:
    """``flops / seconds / 1e12``; ``None`` if either is unknown or ``seconds`` is not positive."""
    if flops is None or seconds is None or not (math.isfinite(flops) and math.isfinite(seconds)):
        return None
    if seconds <= 0 or flops < 0:
        return None
    return flops / seconds / 1e12


def mfu(achieved: float | None, peak: float | None) -> float | None:
    """Model FLOPs utilisation, ``achieved / peak`` (both TFLOP/s), as a fraction; ``None`` if unknown."""
    if achieved is None or peak is None or not (math.isfinite(achieved) and math.isfinite(peak)):
        return None
    if peak <= 0 or achieved < 0:
        return None
    return achieved / peak


def _median(samples: list[float] | None) -> float | None:
    return statistics.median(samples) if samples else None


def step_fields(record: Record) -> dict[str, Any]:
    """The derived fields of a step record from its samples, ``batch_size``, ``flops_*`` and
    ``peak_tflops``: every median, both throughputs (images per second of the median phased step and
    of the median inference pass) and, per :data:`~bench.record.schema.EFFICIENCY` phase, achieved
    TFLOP/s and MFU."""
    out: dict[str, Any] = {}
    medians: dict[str, float | None] = {}
    for name in (*PHASES, "step"):
        medians[name] = _median(record.samples(name))
        out[quantity(name).time] = medians[name]
    batch = record.batch_size or 0
    phased = [sum(parts) for parts in zip(*(record.samples(p) or [] for p in ("forward", "backward", "optimizer")))]
    train = _median(phased)
    inference = medians["inference"]
    out["throughput_train_ips"] = batch / train if batch and train else None
    out["throughput_inference_ips"] = batch / inference if batch and inference else None
    flops: dict[str, float | None] = {}
    for name in EFFICIENCY:
        key = quantity(name).flops
        flops[name] = getattr(record, key) if key is not None else None
    forward, backward = flops["forward"], flops["backward"]
    flops["step"] = forward + backward if forward is not None and backward is not None else None
    for name in EFFICIENCY:
        q = quantity(name)
        achieved = achieved_tflops(flops[name], medians[name])
        out[q.tflops] = achieved  # type: ignore[index]
        out[q.mfu] = mfu(achieved, record.peak_tflops)  # type: ignore[index]
    return out
