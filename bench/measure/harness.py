"""Time and memory of one training step, phase by phase and as a whole, and of inference.

A :class:`StepBenchmark` owns a case's model, optimiser and a synthetic batch on a device, and runs them
under the case's :class:`~bench.measure.modes.Modes` through a :class:`~bench.measure.modes.Executor` (precision, memory
format, compile; docs/modes.md). A timed round is two training steps:

* :meth:`StepBenchmark.train_step`: forward (model + loss), backward and optimizer step, each timed on its
  own by the device (CUDA events and synchronisation on GPU, ``perf_counter`` on CPU). Each phase ends
  with a synchronisation, so on a GPU a phase costs max(launch, kernels): for a small model the sum of
  the phases overstates the step.
* :meth:`StepBenchmark.whole_step`: the same step with one pair of device-timed events around forward,
  backward and optimizer step and no synchronisation between them (``samples_step_s``).

The two alternate within each round (phased first in even rounds, whole first in odd ones; the round
is :class:`bench.measure.session.StepRound`), so both see the same machine from second to second and
neither always runs straight after a pause. Samples are kept raw. :meth:`StepBenchmark.warmup` runs untimed steps until both
a count and a minimum time are reached, the first of them timed as the first-step latency (with compile,
that step compiles). :meth:`StepBenchmark.run_inference` times eval-mode forward passes without autograd,
and :meth:`StepBenchmark.measure_memory` runs one more round per phase and one whole step under the
device's memory probes (never inside a timed round: the CPU probe slows ops down).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bench.measure.devices import Device, throttle_summary
from bench.measure.efficiency import NoPeak, Peak, phase_flops
from bench.measure.executor import Executor
from bench.measure.objectives import Batch, compute_loss, make_optimizer, trainable_parameters
from bench.record.modes import Modes
from bench.record.schema import PHASES, quantity
from suites.registry import Case


def telemetry_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """The record's telemetry fields from two device snapshots (nothing when the device has none)."""
    if before is None and after is None:
        return {}
    throttled, reasons = throttle_summary(before, after)
    return {"gpu_before": before, "gpu_after": after, "throttled": throttled, "throttle_reasons": reasons}


def synthetic_batch(case: Case, batch_size: int, input_size: int, num_classes: int, seed: int) -> Batch:
    """Random images and labels (timing does not depend on content), from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch_size, case.in_channels, input_size, input_size)

    def images() -> torch.Tensor:
        return torch.randn(shape, generator=gen)

    labels = torch.randint(0, num_classes, (batch_size,), generator=gen)
    if case.regime.loss == "tcel":
        return Batch(images(), labels, images(), images())
    return Batch(images(), labels)


@dataclass
class StepBenchmark:
    case: Case
    device: Device
    batch_size: int
    input_size: int
    seed: int = 0
    modes: Modes = field(default_factory=Modes)
    samples: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    #: Whole training steps timed without synchronisation between the phases.
    whole: list[float] = field(default_factory=list)
    memory: dict[str, int | None] = field(default_factory=dict)
    #: The first warm-up step, timed as a whole (with compile: tracing and compiling included).
    first_step_s: float | None = None
    #: One whole step's absolute peak of tensor memory, and the CUDA allocator's reserved peak.
    step_peak: int | None = None
    reserved_peak: int | None = None
    #: Device telemetry snapshots (CUDA), energy fields, and forward MACs per image at the run's input.
    telemetry: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    energy: dict[str, Any] = field(default_factory=dict)
    macs_per_image: int | None = None
    #: The device's datasheet peak for the run's precision, or why there is none (set with the MACs).
    peak: Peak | NoPeak | None = None
    #: ``--bench-modules`` (bench/measure/modules.py): the breakdown, its static part and its rounds.
    breakdown: Any = None
    modules_static: dict[str, Any] | None = None
    module_rounds: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.executor = Executor(self.modes, self.device.torch_device)
        torch.manual_seed(self.seed)
        #: The case's own module (weights, for the memory probes); :attr:`model` is what runs (compiled
        #: when asked), sharing its parameters.
        self.module: nn.Module = self.case.build(image_size=self.input_size).to(self.device.torch_device)
        try:
            self.model: nn.Module = self.executor.prepare(self.module)
            regime = self.case.regime
            self.optimizer = make_optimizer(regime, trainable_parameters(self.module), regime.stages[0].lr)
            self.batch = self.executor.inputs(synthetic_batch(
                self.case, self.batch_size, self.input_size, self.case.num_classes, self.seed
            ).to(self.device.torch_device))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release what the modes hold for this case (compiled code, its kernel cache); idempotent."""
        self.executor.close()

    # -- one round of each phase -------------------------------------------------------------------
    def _loss(self) -> torch.Tensor:
        return compute_loss(self.case.regime, self.model, self.batch).total

    def _forward(self) -> torch.Tensor:
        return self.executor.forward(self._loss)

    def _backward(self, loss: torch.Tensor) -> None:
        self.executor.backward(loss)

    def _optimizer_step(self) -> None:
        self.executor.step(self.optimizer)

    @staticmethod
    def _check(loss: torch.Tensor) -> None:
        if not torch.isfinite(loss.detach()).item():
            raise FloatingPointError(f"non-finite loss {loss.item()} in a timing step")

    def _step(self, record: bool) -> None:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        t_fwd, loss = self.device.timed(self._forward)
        t_bwd, _ = self.device.timed(lambda: self._backward(loss))
        t_opt, _ = self.device.timed(self._optimizer_step)
        self._check(loss)
        if record:
            self.samples["forward"].append(t_fwd)
            self.samples["backward"].append(t_bwd)
            self.samples["optimizer"].append(t_opt)

    def _run_step(self) -> torch.Tensor:
        loss = self._forward()
        self._backward(loss)
        self._optimizer_step()
        return loss

    def _whole_step(self) -> float:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        seconds, loss = self.device.timed(self._run_step)
        self._check(loss)
        return seconds

    def warmup(self, rounds: int, min_seconds: float = 0.0) -> None:
        """Untimed steps (first-call allocations, cuDNN autotuning, lazy optimiser state, compilation)
        until ``rounds`` steps *and* ``min_seconds`` have passed: on a GPU whose clocks ramp up under
        load a count alone can end before the clocks are up. Whole and phased steps alternate, whole
        first; the first is timed as :attr:`first_step_s`. With compile there is always one, so that no
        timed round compiles."""
        rounds = max(rounds, 1 if self.executor.compiling else 0)
        started = time.perf_counter()
        done = 0
        with self.executor.scope():
            while done < rounds or time.perf_counter() - started < min_seconds:
                if done % 2 == 0:
                    seconds = self._whole_step()
                    if done == 0:
                        self.first_step_s = seconds
                else:
                    self._step(record=False)
                done += 1
            self.device.synchronize()

    def train_step(self) -> None:
        """One training step timed phase by phase."""
        with self.executor.scope():
            self._step(record=True)

    def whole_step(self) -> None:
        """One training step timed as a whole, without synchronisation between its phases."""
        with self.executor.scope():
            self.whole.append(self._whole_step())

    def inference_round(self, record: bool = True) -> None:
        """One timed eval-mode forward pass without autograd (``bench ab`` interleaves these)."""
        self.model.eval()
        try:
            with self.executor.scope(), torch.no_grad():
                seconds, _ = self.device.timed(lambda: self.executor.forward(lambda: self.model(self.batch.images)))
        finally:
            self.model.train()
        if record:
            self.samples["inference"].append(seconds)

    def run_inference(self, rounds: int, warmup_rounds: int) -> None:
        # with compile, the first eval-mode no-grad call compiles again: never inside a timed round
        warmup_rounds = max(warmup_rounds, 1 if self.executor.compiling else 0)
        for i in range(warmup_rounds + rounds):
            self.inference_round(record=i >= warmup_rounds)

    def measure_memory(self) -> None:
        """Peak tensor memory above the phase's starting level, one probed round per phase; then the
        absolute peak of one whole step (weights, optimiser state and activations) and, on CUDA, the
        caching allocator's reserved peak.

        On the CPU the probe is a dispatch mode, and dynamo runs a compiled model eagerly while one is
        active, so under compile the CPU figures are those of the eager model (docs/modes.md)."""
        owners = (self.module, self.optimizer)
        with self.executor.scope():
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            with self.device.peak_memory(*owners) as fwd:
                loss = self._forward()
            with self.device.peak_memory(*owners) as bwd:
                self._backward(loss)
            with self.device.peak_memory(*owners) as opt:
                self._optimizer_step()
            del loss
            self.model.eval()
            with torch.no_grad(), self.device.peak_memory(*owners) as inf:
                self.executor.forward(lambda: self.model(self.batch.images))
            self.model.train()
            with self.device.step_memory(self.module, self.optimizer, self.batch) as step:
                self.optimizer.zero_grad(set_to_none=True)
                loss = self._forward()
                self._backward(loss)
                self._optimizer_step()
            del loss
        self.memory = {"forward": fwd.bytes, "backward": bwd.bytes, "optimizer": opt.bytes, "inference": inf.bytes}
        self.step_peak, self.reserved_peak = step.allocated, step.reserved

    # -- per-module breakdown (bench/measure/modules.py) -------------------------------------------------------
    def modules_prepare(self, depth: int) -> None:
        """Select the modules to break down to ``depth``; on the case's own (eager) module, since hooks
        would split a compiled graph."""
        from bench.measure.modules import Breakdown

        self.breakdown = Breakdown(self.module, depth, self.device)

    def _modules_step(self) -> dict[str, Any]:
        def forward() -> torch.Tensor:
            return self.executor.forward(lambda: compute_loss(self.case.regime, self.module, self.batch).total)

        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.executor.scope():
            return self.breakdown.round(forward, self._backward, after=self._optimizer_step)

    def modules_round(self) -> dict[str, Any]:
        """One breakdown round (an untimed one first): per-module and whole-phase forward and backward
        times of one instrumented training step; never one of the timed rounds."""
        if self.breakdown is None:
            raise RuntimeError("modules_round before modules_prepare")
        if not self.module_rounds:
            self._modules_step()  # the hooks' first run allocates; keep it out of the samples
        sample = self._modules_step()
        self.module_rounds.append(sample)
        return sample

    def measure_modules_static(self) -> dict[str, Any]:
        """Parameters, MACs per image at this run's input and activation bytes per module."""
        if self.breakdown is None:
            raise RuntimeError("measure_modules_static before modules_prepare")

        def forward() -> torch.Tensor:
            self.module.train()
            self.optimizer.zero_grad(set_to_none=True)
            return self.executor.forward(lambda: compute_loss(self.case.regime, self.module, self.batch).total)

        with self.executor.scope():
            self.modules_static = self.breakdown.static(
                (self.case.in_channels, self.input_size, self.input_size), forward)
        return self.modules_static

    def measure_modules(self, depth: int, rounds: int) -> None:
        """The breakdown as a stage of its own: static part, then ``rounds`` breakdown rounds."""
        self.modules_prepare(depth)
        self.measure_modules_static()
        for _ in range(rounds):
            self.modules_round()

    # -- telemetry, energy, efficiency ----------------------------------------------------------------
    def snapshot(self, when: str) -> None:
        """Device telemetry ``before`` the timed rounds or right ``after`` them (CUDA; None on CPU)."""
        if when not in ("before", "after"):
            raise ValueError(f"snapshot {when!r}: expected 'before' or 'after'")
        self.telemetry[when] = self.device.telemetry()

    def measure_energy(self, min_seconds: float, min_rounds: int) -> None:
        """Joules per training step and per inference batch, and mean power, each over a window of
        untimed rounds of at least ``min_seconds`` and ``min_rounds`` (energy counters update every few
        to a hundred milliseconds, far coarser than one round; docs/efficiency.md)."""
        from bench.measure.energy import Unavailable, measure

        def step() -> None:
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            self._run_step()

        def inference() -> None:
            self.model.eval()
            with torch.no_grad():
                self.executor.forward(lambda: self.model(self.batch.images))

        self.energy = {}
        with self.device.energy_counter() as counter:
            if isinstance(counter, Unavailable):
                self.energy["energy_unavailable"] = counter.reason
                return
            with self.executor.scope():
                try:
                    for phase, run_round in (("step", step), ("inference", inference)):
                        window = measure(counter, run_round, min_seconds=min_seconds, min_rounds=min_rounds,
                                         synchronize=self.device.synchronize)
                        if isinstance(window, Unavailable):
                            self.energy["energy_unavailable"] = window.reason
                            return
                        self.energy[f"energy_{phase}_j"] = window.joules_per_round
                        self.energy[f"power_{phase}_w"] = window.mean_power_w
                finally:
                    self.model.train()

    def measure_efficiency(self) -> None:
        """Forward MACs per image at *this run's* input size (not the native one the static cost uses),
        from which :meth:`record_fields` derives achieved TFLOP/s and MFU per phase."""
        from bench.measure.flops import count_macs

        was_training = self.module.training
        self.module.eval()
        try:
            x = torch.zeros(1, self.case.in_channels, self.input_size, self.input_size,
                            device=self.device.torch_device)
            self.macs_per_image, _, _ = count_macs(self.module, (x,))
        finally:
            self.module.train(was_training)
        # once per case: record_fields runs after every stage
        self.peak = self.device.peak(self.modes.precision)

    def _efficiency_fields(self) -> dict[str, object]:
        """FLOPs per round of each phase and the peak they are held against (the achieved TFLOP/s and
        MFU derive from them and the medians: :func:`bench.record.derive.step_fields`)."""
        peak = self.peak
        if self.macs_per_image is None or peak is None:
            return {}
        calls = 3 if self.case.regime.loss == "tcel" else 1  # anchor, positive and negative
        flops = phase_flops(self.macs_per_image, self.batch_size, calls)
        fields: dict[str, object] = {quantity(p).flops: flops[p].value for p in ("forward", "backward", "inference")}  # type: ignore[misc]
        fields["peak_tflops"] = None if isinstance(peak, NoPeak) else peak.tflops
        fields["peak_source"] = (peak.reason if isinstance(peak, NoPeak)
                                 else f"{peak.gpu.model} {peak.precision}: {peak.gpu.source}")
        return fields

    # -- results -------------------------------------------------------------------------------------
    def record_fields(self) -> dict[str, object]:
        """The step fields of a :class:`bench.record.schema.Record` that this benchmark measured: raw
        samples, peaks, modes, telemetry, energy, FLOPs and the breakdown. The medians, throughputs and
        efficiency derive from them (:func:`bench.record.derive.step_fields`)."""
        out: dict[str, object] = {}
        for phase in PHASES:
            q = quantity(phase)
            out[q.samples] = list(self.samples[phase])
            out[q.memory] = self.memory.get(phase)  # type: ignore[index]
        out[quantity("step").samples] = list(self.whole)
        out["first_step_s"] = self.first_step_s
        out["mem_step_peak_bytes"] = self.step_peak
        out["mem_reserved_peak_bytes"] = self.reserved_peak
        out.update(self.executor.record_fields())
        out.update(telemetry_fields(self.telemetry.get("before"), self.telemetry.get("after")))
        out.update(self.energy)
        out.update(self._efficiency_fields())
        return out

    def modules_fields(self, phase_medians: dict[str, float | None]) -> dict[str, Any]:
        """The record's ``modules*`` fields from the breakdown's rounds (``{}`` without a breakdown);
        ``phase_medians``: the ordinary rounds' forward and backward medians, for the overhead."""
        if self.modules_static is None or not self.module_rounds:
            return {}
        from bench.measure.modules import assemble

        return assemble(self.modules_static, self.module_rounds, phase_medians)
