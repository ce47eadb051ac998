"""Build pytest-benchmark results files from :class:`~bench.record.Record` objects, as
``pytest bench/ --benchmark-json`` writes them, so that tests of compare/report/merge do not depend on
the harness. Noise is deterministic (seeded), so every test sees the same numbers on every run.
"""

from __future__ import annotations

import copy
import json
import math
import random
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.record import PHASES, Record

ENV: dict[str, Any] = {
    "device": "cpu",
    "device_name": "Test CPU @ 2.0GHz",
    "profile": "smoke",
    "torch": "2.14.1",
    "torchvision": "0.29.1",
    "cuda": None,
    "cudnn": None,
    "threads": 2,
    "deterministic": True,
    "suite_version": "0.1.0",
    "gpu": None,
}

#: A small two-suite run: (case, suite, params, MACs, forward seconds, test accuracy).
CASES: tuple[tuple[str, str, int, int, float, float], ...] = (
    ("dogbreed_cnn", "dogbreed", 585_383, 1_120_000_000, 0.020, 0.59),
    ("dogbreed_dsc", "dogbreed", 74_663, 160_000_000, 0.012, 0.56),
    ("dogbreed_deformable", "dogbreed", 621_725, 1_300_000_000, 0.300, 0.57),
    ("resnet50_dcn_0000", "resnet50_dcn", 23_528_522, 4_089_000_000, 0.080, 0.85),
    ("resnet50_dcn_0001", "resnet50_dcn", 23_611_484, 4_200_000_000, 0.150, 0.86),
)


def noisy(median: float, n: int, rng: random.Random, spread: float = 0.02) -> list[float]:
    """``n`` positive samples around ``median`` with relative spread ``spread``."""
    return [median * (1.0 + rng.gauss(0.0, spread)) for _ in range(n)]


def _drift(rng: random.Random, between: float) -> float:
    return math.exp(rng.gauss(0.0, between)) if between else 1.0


def many_cases(n: int) -> tuple[tuple[str, str, int, int, float, float], ...]:
    """``n`` made-up cases in the shape of :data:`CASES` (a full run has 32), forward 5–80 ms."""
    return tuple((f"case_{i:02d}", "dogbreed", 100_000 + i, 10**9 + i, 0.005 * (1 + i % 16), 0.5)
                 for i in range(n))


def step_record(
    case: str,
    suite: str = "dogbreed",
    *,
    params: int = 585_383,
    macs: int = 1_120_000_000,
    forward_s: float = 0.020,
    rounds: int = 7,
    noise_seed: int = 0,
    spread: float = 0.02,
    device: str = "cpu",
    profile: str = "smoke",
    mem_bytes: int = 64 << 20,
    batch_size: int = 2,
    input_size: int = 64,
    between: float = 0.0,
) -> Record:
    """A measured training-step record; backward ≈ 2× forward, optimizer ≈ 0.3×, inference ≈ 0.8×.
    ``between`` is the noise between runs: the whole case runs exp(N(0, between)) times slower, as on
    a shared machine whose speed drifts from one minute to the next."""
    rng = random.Random(f"{case}/step/{noise_seed}")
    forward_s *= _drift(rng, between)
    record = Record(
        case=case, suite=suite, kind="step", profile=profile, device=device,
        batch_size=batch_size, input_size=input_size, in_channels=3, num_classes=7,
        params_total=params, params_trainable=params, macs_forward=macs, threads=2,
    )
    for phase, factor in zip(PHASES, (1.0, 2.0, 0.3, 0.8)):
        record.set_samples(phase, noisy(forward_s * factor, rounds, rng, spread))
    record.mem_forward_bytes = mem_bytes
    record.mem_backward_bytes = 2 * mem_bytes
    record.mem_optimizer_bytes = mem_bytes // 4
    record.mem_inference_bytes = mem_bytes // 2
    return record


def train_record(
    case: str,
    suite: str = "dogbreed",
    *,
    params: int = 585_383,
    macs: int = 1_120_000_000,
    accuracy: float = 0.59,
    epochs: int = 3,
    epoch_s: float = 2.0,
    noise_seed: int = 0,
    seed: int = 0,
    device: str = "cpu",
    profile: str = "smoke",
    between: float = 0.0,
) -> Record:
    """A fixed-budget training record with a per-epoch curve ending at ``accuracy``."""
    rng = random.Random(f"{case}/train/{noise_seed}")
    epoch_s *= _drift(rng, between)
    record = Record(
        case=case, suite=suite, kind="train", profile=profile, device=device,
        batch_size=32, input_size=32, in_channels=3, num_classes=7, params_total=params,
        params_trainable=params, macs_forward=macs, dataset="synthetic", seed=seed,
        train_steps=12 * epochs, epochs=epochs, threads=2,
    )
    record.set_samples("epoch", noisy(epoch_s, epochs, rng))
    curve = []
    for e in range(1, epochs + 1):
        frac = e / epochs
        curve.append({
            "epoch": e,
            "loss_train": 2.0 - 1.2 * frac,
            "accuracy_train": min(1.0, accuracy * frac + 0.1),
            "loss_val": 2.1 - 1.1 * frac,
            "accuracy_val": accuracy * frac,
            "seconds": record.samples_epoch_s[e - 1],  # type: ignore[index]
        })
    record.curve = curve
    record.accuracy_train = min(1.0, accuracy + 0.1)
    record.accuracy_val = accuracy
    record.accuracy_test = accuracy
    record.accuracy_test_deformed = accuracy - 0.05
    record.loss_train, record.loss_val, record.loss_test = 0.8, 1.0, 1.0
    return record


def failed_record(case: str, kind: str = "step", status: str = "oom", suite: str = "dogbreed", **kw: Any) -> Record:
    error = {"oom": "OutOfMemoryError: CUDA out of memory", "diverged": "loss is nan at step 3"}.get(
        status, "RuntimeError: boom"
    )
    return Record(case=case, suite=suite, kind=kind, profile=kw.get("profile", "smoke"),  # type: ignore[arg-type]
                  device=kw.get("device", "cpu"), status=status, error=error)  # type: ignore[arg-type]


def standard_run(noise_seed: int = 0, cases: Sequence[tuple] = CASES, **kw: Any) -> list[Record]:
    """Step and train records for every case in ``cases``; ``noise_seed`` draws a new, equally
    distributed sample (a second back-to-back run of the same commit)."""
    records: list[Record] = []
    for case, suite, params, macs, forward_s, acc in cases:
        records.append(step_record(case, suite, params=params, macs=macs, forward_s=forward_s,
                                   noise_seed=noise_seed, **kw))
        records.append(train_record(case, suite, params=params, macs=macs, accuracy=acc,
                                    epoch_s=forward_s * 100, noise_seed=noise_seed, **kw))
    return records


def find(records: Iterable[Record], case: str, kind: str = "step") -> Record:
    return next(r for r in records if r.case == case and r.kind == kind)


def scale_samples(record: Record, factor: float, phases: Sequence[str] = ("forward",)) -> None:
    """Multiply a record's raw samples of ``phases`` (and so their medians) by ``factor``."""
    for phase in phases:
        samples = getattr(record, f"samples_{phase}_s")
        record.set_samples(phase, [s * factor for s in samples])


def benchmark_name(record: Record) -> str:
    return f"test_{record.kind}[{record.case}]"


def benchmark_json(record: Record, name: str | None = None) -> dict[str, Any]:
    """One entry of ``benchmarks`` as pytest-benchmark 5 writes it (with ``data`` saved)."""
    name = name or benchmark_name(record)
    if record.status != "ok":
        data: list[float] = []
    elif record.kind == "train":
        data = list(record.samples_epoch_s or [])
    else:
        parts = [getattr(record, f"samples_{p}_s") for p in ("forward", "backward", "optimizer")]
        data = [sum(v) for v in zip(*parts)]
    return {
        "group": record.kind,
        "name": name,
        "fullname": f"bench/test_cases.py::{name}",
        "params": {"case": record.case},
        "param": record.case,
        "extra_info": record.to_extra_info(),
        "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "max_time": 1.0,
                    "min_time": 5e-06, "warmup": False},
        "stats": _stats(data) if data else None,
    }


def _stats(data: list[float]) -> dict[str, Any]:
    ordered = sorted(data)
    q = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    mean = statistics.mean(data)
    return {
        "min": ordered[0], "max": ordered[-1], "mean": mean,
        "stddev": statistics.stdev(data) if len(data) > 1 else 0,
        "rounds": len(data), "median": statistics.median(data), "iqr": q[2] - q[0], "q1": q[0], "q3": q[2],
        "iqr_outliers": 0, "stddev_outliers": 0, "outliers": "0;0", "ld15iqr": ordered[0], "hd15iqr": ordered[-1],
        "ops": 1 / mean, "total": sum(data), "data": list(data), "iterations": 1,
    }


def results_json(
    records: Iterable[Record], *, commit: str = "0123456789abcdef", **env: Any
) -> dict[str, Any]:
    """A whole results document; ``env`` overrides fields of ``machine_info.archbench``."""
    archbench = {**copy.deepcopy(ENV), **env}
    return {
        "machine_info": {
            "node": "testhost", "processor": "x86_64", "machine": "x86_64", "python_compiler": "GCC",
            "python_implementation": "CPython", "python_implementation_version": "3.11.2",
            "python_version": "3.11.2", "python_build": ["main", ""], "release": "6.1", "system": "Linux",
            "cpu": {"brand_raw": ENV["device_name"], "count": 2},
            "archbench": archbench,
        },
        "commit_info": {"id": commit, "time": "2025-01-01T00:00:00+00:00", "author_time": "2025-01-01T00:00:00+00:00",
                        "dirty": False, "project": "archbench", "branch": "main"},
        "benchmarks": [benchmark_json(r) for r in records],
        "datetime": "2025-01-01T00:00:00.000000+00:00",
        "version": "5.3.1",
    }


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=4), encoding="utf-8")
    return path


def write_results(path: Path, records: Iterable[Record], **kw: Any) -> Path:
    return write_json(path, results_json(records, **kw))
