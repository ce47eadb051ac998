"""Build pytest-benchmark results files from :class:`~bench.record.schema.Record` objects, as
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

from bench.record.schema import PHASES, Record

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


# -- per-module breakdowns (--bench-modules) ----------------------------------------------------------

#: A ResNet-18 with a deformable stem (flowers_resnet18_deform_after_conv1), cut at depth 2: (name, type,
#: depth, share of a phase's time, share of the MACs). Leaves' time shares add up to 0.87, the coverage a
#: breakdown reports when parents' own operations (residual additions) and hooks take the rest; the
#: deformable convolution at full resolution is the largest single module, as it is in that case.
RESNET18_DEFORM_TREE: tuple[tuple[str, str, int, float, float], ...] = (
    ("conv1", "Conv1PlusDeform", 1, 0.0, 0.0),
    ("conv1.0", "Conv2d", 2, 0.04, 0.06),
    ("conv1.1", "DeformConv2d", 2, 0.30, 0.14),
    ("bn1", "BatchNorm2d", 1, 0.02, 0.0),
    ("relu", "ReLU", 1, 0.01, 0.0),
    ("maxpool", "MaxPool2d", 1, 0.01, 0.0),
    *((f"layer{i}", "Sequential", 1, 0.0, 0.0) for i in range(1, 5)),
    ("fc", "Linear", 1, 0.005, 0.001),
    ("avgpool", "AdaptiveAvgPool2d", 1, 0.005, 0.0),
)
_BLOCKS = tuple((f"layer{i}.{j}", "BasicBlock", 2, 0.06, 0.099) for i in range(1, 5) for j in range(2))


def _tree() -> list[tuple[str, str, int, float, float]]:
    """The tree in model order: each layer followed by its blocks."""
    out: list[tuple[str, str, int, float, float]] = []
    for row in RESNET18_DEFORM_TREE:
        out.append(row)
        out += [b for b in _BLOCKS if b[0].startswith(row[0] + ".")]
    order = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc")
    top = {name: i for i, name in enumerate(order)}
    return sorted(out, key=lambda r: (top[r[0].split(".")[0]], r[2], r[0]))


def with_modules(record: Record, *, depth: int = 2, noise_seed: int = 0, spread: float = 0.02,
                 tree: Sequence[tuple[str, str, int, float, float]] | None = None) -> Record:
    """Attach a breakdown to a step record: per module and round, the record's phase sample of that
    round times the module's share (with noise), so that round i of a module belongs with round i of the
    phase; parents are the sums of their children."""
    rng = random.Random(f"{record.case}/modules/{noise_seed}")
    rows = [r for r in (tree or _tree()) if r[2] <= depth]
    names = [r[0] for r in rows]
    leaf = {n: not any(o.startswith(n + ".") for o in names) for n in names}
    samples: dict[tuple[str, str], list[float]] = {}
    for phase in ("forward", "backward"):
        phase_samples = getattr(record, f"samples_{phase}_s")
        for name, _, _, share, _ in rows:
            if leaf[name]:
                samples[(name, phase)] = [s * share * (1 + rng.gauss(0, spread)) for s in phase_samples]
        for name in reversed(names):  # deepest first: a parent sums children that are complete
            if not leaf[name]:
                kids = [samples[(o, phase)] for o in names if o.rsplit(".", 1)[0] == name and "." in o]
                samples[(name, phase)] = [sum(v) for v in zip(*kids)]
    macs = record.macs_forward or 0
    modules = []
    for name, type_name, d, _, macs_share in rows:
        children = [r for r in rows if r[0].startswith(name + ".")]
        m_share = sum(r[4] for r in children) if children else macs_share
        fwd, bwd = samples[(name, "forward")], samples[(name, "backward")]
        modules.append({
            "name": name, "type": type_name, "depth": d, "params_total": 1000 * len(name),
            "params_trainable": 1000 * len(name), "macs_forward": int(macs * m_share),
            "samples_forward_s": fwd, "samples_backward_s": bwd,
            "time_forward_s": statistics.median(fwd), "time_backward_s": statistics.median(bwd),
            "mem_activation_bytes": 1 << 20,
        })
    record.modules = modules
    record.modules_depth = depth
    record.modules_coverage = {
        phase: sum(statistics.median(samples[(n, phase)]) for n in names if leaf[n])
        / getattr(record, f"time_{phase}_s") for phase in ("forward", "backward")
    }
    return record


def slow_module(record: Record, name: str, factor: float, phase: str = "backward") -> None:
    """Make one module ``factor`` times slower in ``phase``, round by round: its samples, its parents'
    and the phase's own grow by the same seconds (what a slower module does to a real breakdown)."""
    assert record.modules is not None
    module = next(m for m in record.modules if m["name"] == name)
    added = [s * (factor - 1) for s in module[f"samples_{phase}_s"]]
    for m in record.modules:
        if m["name"] == name or name.startswith(m["name"] + "."):
            m[f"samples_{phase}_s"] = [s + a for s, a in zip(m[f"samples_{phase}_s"], added)]
            m[f"time_{phase}_s"] = statistics.median(m[f"samples_{phase}_s"])
    phase_samples = getattr(record, f"samples_{phase}_s")
    record.set_samples(phase, [s + a for s, a in zip(phase_samples, added)])


def paired(base: Record, head: Record, pairing_id: str = "ab0001") -> None:
    """Mark two records as measured in alternation by one ``bench ab`` run."""
    base.pairing = {"id": pairing_id, "side": "base", "order": "ABBA", "workers": 1}
    head.pairing = {"id": pairing_id, "side": "head", "order": "ABBA", "workers": 1}
