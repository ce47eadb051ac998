"""Time and memory of one training step, phase by phase, and of inference.

A :class:`StepBenchmark` owns a case's model, optimiser and a synthetic batch on a device. Each call of
:meth:`StepBenchmark.train_step` is one round: forward (model + loss), backward and optimizer step, each
timed on its own by the device (CUDA events and synchronisation on GPU, ``perf_counter`` on CPU); the
samples are kept raw. pytest-benchmark calls ``train_step`` and times the whole step itself.
:meth:`StepBenchmark.run_inference` times eval-mode forward passes without autograd, and
:meth:`StepBenchmark.measure_memory` runs one more round per phase under the device's memory probe
(never inside a timed round: the CPU probe slows ops down).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import torch
from torch import nn

from bench.devices import Device
from bench.objectives import Batch, compute_loss, make_optimizer, trainable_parameters
from bench.record import PHASES
from suites.registry import Case


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
    samples: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    memory: dict[str, int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        torch.manual_seed(self.seed)
        self.model: nn.Module = self.case.build(image_size=self.input_size).to(self.device.torch_device)
        regime = self.case.regime
        self.optimizer = make_optimizer(regime, trainable_parameters(self.model), regime.stages[0].lr)
        self.batch = synthetic_batch(
            self.case, self.batch_size, self.input_size, self.case.num_classes, self.seed
        ).to(self.device.torch_device)

    # -- one round of each phase -------------------------------------------------------------------
    def _forward(self) -> torch.Tensor:
        return compute_loss(self.case.regime, self.model, self.batch).total

    def _step(self, record: bool) -> None:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        t_fwd, loss = self.device.timed(self._forward)
        t_bwd, _ = self.device.timed(loss.backward)
        t_opt, _ = self.device.timed(self.optimizer.step)
        if not torch.isfinite(loss.detach()).item():
            raise FloatingPointError(f"non-finite loss {loss.item()} in a timing step")
        if record:
            self.samples["forward"].append(t_fwd)
            self.samples["backward"].append(t_bwd)
            self.samples["optimizer"].append(t_opt)

    def warmup(self, rounds: int) -> None:
        """Untimed rounds: first-call allocations, cuDNN autotuning, lazy optimiser state."""
        for _ in range(rounds):
            self._step(record=False)
        self.device.synchronize()

    def train_step(self) -> None:
        """One timed training step; the target of pytest-benchmark."""
        self._step(record=True)

    def inference_round(self, record: bool = True) -> None:
        """One timed eval-mode forward pass without autograd (``bench ab`` interleaves these)."""
        self.model.eval()
        try:
            with torch.no_grad():
                seconds, _ = self.device.timed(lambda: self.model(self.batch.images))
        finally:
            self.model.train()
        if record:
            self.samples["inference"].append(seconds)

    def run_inference(self, rounds: int, warmup_rounds: int) -> None:
        for i in range(warmup_rounds + rounds):
            self.inference_round(record=i >= warmup_rounds)

    def measure_memory(self) -> None:
        """Peak tensor memory above the phase's starting level, one probed round per phase."""
        owners = (self.model, self.optimizer)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.device.peak_memory(*owners) as fwd:
            loss = self._forward()
        with self.device.peak_memory(*owners) as bwd:
            loss.backward()
        with self.device.peak_memory(*owners) as opt:
            self.optimizer.step()
        del loss
        self.model.eval()
        with torch.no_grad(), self.device.peak_memory(*owners) as inf:
            self.model(self.batch.images)
        self.model.train()
        self.memory = {"forward": fwd.bytes, "backward": bwd.bytes, "optimizer": opt.bytes, "inference": inf.bytes}

    # -- results -------------------------------------------------------------------------------------
    def record_fields(self) -> dict[str, object]:
        """The step fields of a :class:`bench.record.Record` (medians derived from the samples)."""
        out: dict[str, object] = {}
        for phase in PHASES:
            samples = self.samples[phase]
            out[f"samples_{phase}_s"] = list(samples)
            out[f"time_{phase}_s"] = statistics.median(samples) if samples else None
            out[f"mem_{phase}_bytes"] = self.memory.get(phase)
        step = [f + b + o for f, b, o in zip(*(self.samples[p] for p in ("forward", "backward", "optimizer")))]
        out["throughput_train_ips"] = self.batch_size / statistics.median(step) if step else None
        inf = self.samples["inference"]
        out["throughput_inference_ips"] = self.batch_size / statistics.median(inf) if inf else None
        return out
