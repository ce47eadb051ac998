"""The one record type that flows harness → pytest-benchmark JSON (``extra_info``) → comparator.

A record describes one benchmark: a ``step`` record (forward/backward/optimizer/inference timing and
memory) or a ``train`` record (fixed-budget accuracy; pytest-benchmark's own stats are seconds per
epoch). Fields that do not apply to a kind stay ``None``. Times are seconds, memory is bytes, MACs are
multiply-accumulates, accuracies are fractions in [0, 1].

Medians (``time_*_s``) are derived from the raw samples (``samples_*_s``) when the record is made and
are stored beside them because CI tooling reads them directly; :meth:`Record.from_extra_info` rejects a
file where the two disagree.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Kind = Literal["step", "train"]
#: ``ok`` measured; ``oom`` ran out of memory; ``error`` raised; ``diverged`` non-finite training
#: loss; ``interrupted`` the run stopped before the case finished.
Status = Literal["ok", "oom", "error", "diverged", "interrupted"]
STATUSES: tuple[str, ...] = get_args(Status)
PHASES: tuple[str, ...] = ("forward", "backward", "optimizer", "inference")
#: Everything with raw samples and a median derived from them: the phases, the whole step, the epoch.
SAMPLED: tuple[str, ...] = (*PHASES, "step", "epoch")
#: What achieved TFLOP/s and MFU are reported for: the phases with counted FLOPs, and the whole step.
EFFICIENCY: tuple[str, ...] = ("forward", "backward", "inference", "step")

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Quantity:
    """The record fields of one sampled quantity (a phase, the whole step, an epoch): the only place
    their names are spelled. Module entries of a breakdown use the same ``samples`` and ``time`` keys."""

    name: str
    #: Raw per-round samples (seconds) and their median.
    samples: str
    time: str
    #: Peak tensor memory of the phase (phases only).
    memory: str | None
    #: FLOPs per round, achieved TFLOP/s and MFU (where FLOPs are counted, :data:`EFFICIENCY`).
    flops: str | None
    tflops: str | None
    mfu: str | None


QUANTITIES: Mapping[str, Quantity] = {
    name: Quantity(
        name, f"samples_{name}_s", f"time_{name}_s",
        memory=f"mem_{name}_bytes" if name in PHASES else None,
        flops=f"flops_{name}" if name in EFFICIENCY and name != "step" else None,
        tflops=f"tflops_{name}" if name in EFFICIENCY else None,
        mfu=f"mfu_{name}" if name in EFFICIENCY else None,
    )
    for name in SAMPLED
}


def quantity(name: str) -> Quantity:
    """The fields of ``name`` (a phase, ``step`` or ``epoch``); ValueError for any other name."""
    try:
        return QUANTITIES[name]
    except KeyError:
        raise ValueError(f"no sampled quantity {name!r}; expected one of {SAMPLED}") from None


# slots: fields are often set by name (:data:`QUANTITIES`); without them a typo would add a stray
# attribute that no file ever shows. With them it raises AttributeError.
@dataclass(slots=True)
class Record:
    case: str
    suite: str
    kind: Kind
    profile: str
    device: str
    status: Status = "ok"
    error: str | None = None
    batch_size: int | None = None
    input_size: int | None = None
    in_channels: int | None = None
    num_classes: int | None = None
    # static cost, at the case's native input and class count, batch 1
    params_total: int | None = None
    params_trainable: int | None = None
    macs_forward: int | None = None
    unsupported_ops: dict[str, int] = field(default_factory=dict)
    # step: per-phase medians and raw samples (seconds), peaks (bytes), throughput (images/s)
    time_forward_s: float | None = None
    time_backward_s: float | None = None
    time_optimizer_s: float | None = None
    time_inference_s: float | None = None
    samples_forward_s: list[float] | None = None
    samples_backward_s: list[float] | None = None
    samples_optimizer_s: list[float] | None = None
    samples_inference_s: list[float] | None = None
    mem_forward_bytes: int | None = None
    mem_backward_bytes: int | None = None
    mem_optimizer_bytes: int | None = None
    mem_inference_bytes: int | None = None
    throughput_train_ips: float | None = None
    throughput_inference_ips: float | None = None
    #: CUDA: NVML snapshots (clocks, temperature, power, clock-event reasons) before the timed rounds and
    #: right after them; ``throttled`` if either showed power capping or a thermal/hardware slowdown.
    gpu_before: dict[str, Any] | None = None
    gpu_after: dict[str, Any] | None = None
    throttled: bool | None = None
    throttle_reasons: list[str] | None = None
    #: Energy over a window of untimed rounds (NVML's counter on CUDA, RAPL on the CPU where readable):
    #: joules per training step and per inference batch, mean watts; else the reason there is none.
    energy_step_j: float | None = None
    energy_inference_j: float | None = None
    power_step_w: float | None = None
    power_inference_w: float | None = None
    energy_unavailable: str | None = None
    #: FLOPs per round at the run's batch and input (2 × MACs; backward estimated as 2 × forward),
    #: achieved TFLOP/s per phase and for the whole step (its median), and the fraction of the device's
    #: datasheet peak for the precision used (``peak_source`` names the row, or why there is none).
    flops_forward: float | None = None
    flops_backward: float | None = None
    flops_inference: float | None = None
    tflops_forward: float | None = None
    tflops_backward: float | None = None
    tflops_inference: float | None = None
    tflops_step: float | None = None
    mfu_forward: float | None = None
    mfu_backward: float | None = None
    mfu_inference: float | None = None
    mfu_step: float | None = None
    peak_tflops: float | None = None
    peak_source: str | None = None
    threads: int | None = None
    # train: fixed-budget accuracy
    time_epoch_s: float | None = None
    samples_epoch_s: list[float] | None = None
    dataset: str | None = None
    seed: int | None = None
    train_steps: int | None = None
    epochs: int | None = None
    diverged_step: int | None = None
    accuracy_train: float | None = None
    accuracy_val: float | None = None
    accuracy_test: float | None = None
    accuracy_test_deformed: float | None = None
    loss_train: float | None = None
    loss_val: float | None = None
    loss_test: float | None = None
    loss_test_deformed: float | None = None
    #: One dict per epoch: {"epoch", "loss_train", "accuracy_train", "loss_val", "accuracy_val", "seconds"}.
    curve: list[dict[str, float]] | None = None
    #: train, ``--bench-seeds``: the seeds trained, and per seed a dict with ``seed``, ``status`` and its own
    #: ``accuracy_*`` / ``loss_*`` / ``train_steps`` / ``diverged_step``. The top-level accuracies and losses
    #: are then the mean over the seeds that finished (``ok``), and ``accuracy_*_spread`` their sample
    #: standard deviation; :func:`seed_values` reads a field per seed from either shape of record.
    seeds: list[int] | None = None
    per_seed: list[dict[str, Any]] | None = None
    accuracy_val_spread: float | None = None
    accuracy_test_spread: float | None = None
    accuracy_test_deformed_spread: float | None = None
    #: train: the initial weights: ``None`` for random initialisation, else their identity, e.g.
    #: ``"torchvision:ResNet50_Weights.IMAGENET1K_V1"`` or ``"file:ckpt.pt"``; the file's SHA-256; and
    #: whether a classifier head of another class count was re-initialised instead of loaded.
    weights: str | None = None
    weights_sha256: str | None = None
    weights_head_reinit: bool | None = None
    #: Set by ``bench ab``: {"id": shared run id, "side": "base"|"head", "order": "ABBA"}; rounds of the
    #: two sides with one id are measured in alternation, index by index.
    pairing: dict[str, Any] | None = None
    # -- execution modes (bench/measure/modes.py, docs/modes.md): what the numbers were measured under ------------
    #: ``--bench-precision`` / ``--bench-memory-format`` / ``--bench-compile``; a file written before
    #: modes existed reads as the defaults, which is what it measured.
    precision: str = "fp32"
    memory_format: str = "contiguous"
    compile: str = "none"
    #: Read inside the measurement (``None`` in files from before): TF32 for matmuls and cuDNN, the
    #: float32 matmul precision, and cuDNN's determinism and autotuning flags.
    tf32_matmul: bool | None = None
    tf32_cudnn: bool | None = None
    float32_matmul_precision: str | None = None
    cudnn_deterministic: bool | None = None
    cudnn_benchmark: bool | None = None
    #: step: the whole training step timed without synchronisation between its phases (seconds).
    time_step_s: float | None = None
    samples_step_s: list[float] | None = None
    #: step: the first warm-up step, timed as a whole (with compile, compilation included).
    first_step_s: float | None = None
    #: With compile: seconds spent compiling in the case, recompilations and their reasons.
    compile_time_s: float | None = None
    compile_recompiles: int | None = None
    compile_recompile_reasons: list[str] | None = None
    #: fp16: optimizer steps the GradScaler skipped because a gradient overflowed.
    amp_skipped_steps: int | None = None
    #: step: absolute peak of tensor memory over one whole step, and the CUDA allocator's reserved peak.
    mem_step_peak_bytes: int | None = None
    mem_reserved_peak_bytes: int | None = None
    #: step, ``--bench-modules`` (bench/measure/modules.py): the cost per module, measured in rounds of its own after
    #: the timed ones. One dict per module in model order, down to ``modules_depth``, with "name" (qualified,
    #: "" for the model, e.g. "layer1", "layer1.0"), "type" (class name), "depth", "params_total",
    #: "params_trainable", "macs_forward", per-round "samples_forward_s" / "samples_backward_s" with their
    #: medians "time_forward_s" / "time_backward_s", and "mem_activation_bytes" (what its forward leaves
    #: saved for the backward pass). Extra keys: "leaf" (no listed descendant: the leaves are what the
    #: coverage sums), "share_forward" / "share_backward" (its median over the whole phase's median in the
    #: same rounds) and "calls" (forward calls per round; the triplet loss calls the model three times).
    #: "macs_forward" is per image at the run's input size (the record's own is at the native input).
    modules: list[dict[str, Any]] | None = None
    modules_depth: int | None = None
    #: Per phase ("forward", "backward"): the deepest modules' median times summed, over the whole phase's
    #: median in the same rounds, so the reader sees what the breakdown leaves out.
    modules_coverage: dict[str, float] | None = None
    #: The same ratio within each breakdown round, its median over the rounds: on a busy machine another
    #: process's bursts land in a different module each round and lift the phase's median but no module's.
    modules_coverage_per_round: dict[str, float] | None = None
    #: The whole forward and backward phase timed in each breakdown round (aligned with the modules'
    #: samples), and their medians over the ordinary rounds' medians: what the instrumentation costs.
    modules_phase_samples_s: dict[str, list[float]] | None = None
    modules_overhead: dict[str, float] | None = None
    schema: int = SCHEMA_VERSION

    def samples(self, name: str) -> list[float] | None:
        """The raw samples of ``name`` (a phase, ``step`` or ``epoch``), seconds per round."""
        return getattr(self, quantity(name).samples)  # type: ignore[no-any-return]

    def median(self, name: str) -> float | None:
        """The median of ``name``'s samples, as stored (``time_<name>_s``)."""
        return getattr(self, quantity(name).time)  # type: ignore[no-any-return]

    def memory(self, phase: str) -> int | None:
        """Peak tensor memory of ``phase`` above its starting level (``mem_<phase>_bytes``)."""
        key = quantity(phase).memory
        return None if key is None else getattr(self, key)

    def set_samples(self, name: str, samples: list[float]) -> None:
        """Store raw samples for ``name`` (a phase, ``step`` or ``epoch``) and derive their median."""
        q = quantity(name)
        setattr(self, q.samples, list(samples))
        setattr(self, q.time, statistics.median(samples) if samples else None)

    def update(self, fields: Mapping[str, Any]) -> None:
        """Set several fields by name; any name that is not a field is an error and sets nothing."""
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise AttributeError(f"Record has no field(s) {', '.join(map(repr, unknown))}")
        for key, value in fields.items():
            setattr(self, key, value)

    # Slots leave no __dict__; these let every pickle protocol (not only 2+) copy a record, as a plain
    # dataclass could.
    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.update(state)

    def to_extra_info(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_extra_info(cls, data: Mapping[str, Any], where: str = "extra_info") -> Record:
        """Parse a record, naming ``where`` (file and benchmark) and the field in any error."""
        if not isinstance(data, Mapping):
            raise RecordError(f"{where}: extra_info is not an object")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("case", "suite", "kind", "profile", "device") if k not in data]
        if missing:
            raise RecordError(f"{where}: not an archbench record (missing {', '.join(missing)})")
        known = {k: v for k, v in data.items() if k in names}
        for key, value in known.items():
            problem = _type_problem(_FIELD_TYPES[key], value)
            if problem:
                raise RecordError(f"{where}: field {key!r} is {_shown(value)}, expected {problem}")
        record = cls(**known)
        if record.kind not in ("step", "train"):
            raise RecordError(f"{where}: field 'kind' is {record.kind!r}, expected 'step' or 'train'")
        if record.status not in STATUSES:
            raise RecordError(f"{where}: field 'status' is {record.status!r}, expected one of {STATUSES}")
        for f in dataclasses.fields(cls):
            value = getattr(record, f.name)
            if isinstance(value, float) and not math.isfinite(value) and f.name.startswith(("time_", "mem_")):
                raise RecordError(f"{where}: field {f.name!r} is {value}")
        for name in SAMPLED:
            samples, median = record.samples(name), record.median(name)
            if samples and median is not None and not math.isclose(
                statistics.median(samples), median, rel_tol=1e-9, abs_tol=1e-12
            ):
                raise RecordError(f"{where}: field {quantity(name).time!r} disagrees with the median of its samples")
        if record.per_seed is not None:
            _check_seeds(record, where)
        return record


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    # a whole float (64.0) is a whole number: a writer in another language may not tell them apart
    return _is_number(value) and (isinstance(value, int) or float(value).is_integer())


#: What a field's declared type admits, checked when a record is read so that a string where a number
#: belongs is refused by name instead of surfacing as a TypeError deep inside a reader (fields of other
#: types are checked where they are used: per_seed, curve, modules).
_CHECKS: Mapping[str, tuple[str, Callable[[Any], bool]]] = {
    "float": ("a number", _is_number),
    "int": ("a whole number", _is_whole),
    "str": ("a string", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "list[float]": ("a list of numbers", lambda v: isinstance(v, list) and all(_is_number(x) for x in v)),
    "list[int]": ("a list of whole numbers", lambda v: isinstance(v, list) and all(_is_whole(x) for x in v)),
    "list[str]": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
}


def _type_problem(declared: str, value: Any) -> str | None:
    """What ``value`` should have been, or ``None`` when the field's declared type admits it."""
    optional = declared.endswith(" | None")
    base = declared.removesuffix(" | None")
    if value is None:
        return None if optional or base not in _CHECKS else _CHECKS[base][0]
    check = _CHECKS.get(base)
    return None if check is None or check[1](value) else check[0]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_FIELD_TYPES: Mapping[str, str] = {f.name: str(f.type) for f in dataclasses.fields(Record)}


#: Per-seed accuracy fields whose top-level value is the seeds' mean (``--bench-seeds``).
SEED_MEANS: tuple[str, ...] = ("accuracy_train", "accuracy_val", "accuracy_test", "accuracy_test_deformed")


def _check_seeds(record: Record, where: str) -> None:
    """A record with ``per_seed`` must carry the mean of its seeds at the top level, as a median must
    agree with its samples: otherwise a reader and the comparator could see two different accuracies."""
    if not isinstance(record.per_seed, list) or not all(isinstance(s, Mapping) for s in record.per_seed):
        raise RecordError(f"{where}: field 'per_seed' is not a list of objects")
    for key in SEED_MEANS:
        values = seed_values(record, key)
        top = getattr(record, key)
        if values and (top is None or not math.isclose(statistics.fmean(values), top, rel_tol=1e-9, abs_tol=1e-12)):
            raise RecordError(f"{where}: field {key!r} is not the mean of 'per_seed'")


def seed_values(record: Record, key: str) -> list[float]:
    """``key`` (e.g. ``"accuracy_test"``) of every seed that finished: from ``per_seed`` when the record
    has it, else the record's one value; empty when there is none."""
    if record.per_seed:
        return [float(s[key]) for s in record.per_seed if s.get("status", "ok") == "ok" and s.get(key) is not None]
    value = getattr(record, key)
    return [] if value is None else [float(value)]


def random_frozen_backbone(record: Record) -> bool:
    """Whether the record trained only part of a network that started from random weights: its accuracy
    then measures a head on random features, not the architecture."""
    return (
        record.weights is None
        and record.params_trainable is not None
        and record.params_total is not None
        and record.params_trainable < record.params_total
    )


class RecordError(ValueError):
    """A record in a results file is malformed; the message names the file, benchmark and field."""
