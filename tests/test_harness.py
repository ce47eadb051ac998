"""The step harness on a tiny case, on the CPU for real."""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from measuring import fields as derived
from measuring import session
from torch import nn
from torch.utils import benchmark as tbench

from bench.measure.devices import CpuDevice
from bench.measure.harness import StepBenchmark, synthetic_batch
from bench.record.schema import PHASES, quantity
from suites.case import Case, Regime, Reported, Stage


def tiny_net(num_classes: int, image_size: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )


def tiny_case(loss: str = "cross_entropy", builder=tiny_net) -> Case:
    return Case(
        name="tiny", suite="dogbreed", builder=builder, input_size=32, in_channels=3, num_classes=5,
        regime=Regime(loss=loss, optimizer="adam", stages=(Stage(1.0, 1e-3),)),  # type: ignore[arg-type]
        reported=Reported(source="test"),
    )


def test_step_records_every_phase() -> None:
    dev = CpuDevice(threads=1)
    run = StepBenchmark(tiny_case(), dev, batch_size=4, input_size=32)
    run.warmup(1)
    for _ in range(3):
        run.train_step()
    run.run_inference(rounds=3, warmup_rounds=1)
    run.measure_memory()
    fields = derived(run)
    for phase in PHASES:
        q = quantity(phase)
        samples = fields[q.samples]
        assert len(samples) == 3 and all(s > 0 for s in samples)
        assert fields[q.time] == statistics.median(samples)
        assert fields[q.memory] is not None
    # forward keeps the activations autograd saves; inference (no grad) keeps far less
    assert fields["mem_forward_bytes"] > fields["mem_inference_bytes"] > 0
    # backward materialises one gradient per parameter at least
    params_bytes = sum(p.numel() * p.element_size() for p in run.model.parameters())
    assert fields["mem_backward_bytes"] >= params_bytes
    assert fields["throughput_train_ips"] > 0 and fields["throughput_inference_ips"] > 0
    # a whole step's absolute peak holds weights, gradients and Adam's two moments at least; no
    # caching allocator on the CPU, so nothing reserved
    assert fields["mem_step_peak_bytes"] >= 4 * params_bytes
    assert fields["mem_reserved_peak_bytes"] is None
    assert fields["first_step_s"] is not None and fields["first_step_s"] > 0
    assert fields["precision"] == "fp32" and fields["tf32_matmul"] is False


def test_a_round_is_a_phased_and_a_whole_step_in_alternating_order() -> None:
    """The session's round (every driver's): phased and whole step in alternating order, then inference."""
    step = session(batch_size=4).step(tiny_case(), static=False)
    run = step.bench
    order: list[str] = []
    phased, whole, inference = run._step, run._whole_step, run.inference_round
    run._step = lambda record: (order.append("phased"), phased(record))[1]  # type: ignore[method-assign]
    run._whole_step = lambda: (order.append("whole"), whole())[1]  # type: ignore[method-assign]
    run.inference_round = lambda: (order.append("inference"), inference())[1]  # type: ignore[method-assign]
    for _ in range(4):
        step.round()
    assert order == ["phased", "whole", "inference", "whole", "phased", "inference"] * 2
    fields = derived(run)
    assert len(fields["samples_step_s"]) == 4 and len(fields["samples_forward_s"]) == 4
    assert fields["time_step_s"] == statistics.median(fields["samples_step_s"])
    # on the CPU nothing is asynchronous: the whole step is about the phases' sum, never a fraction of it
    phases = statistics.median(f + b + o for f, b, o in zip(
        fields["samples_forward_s"], fields["samples_backward_s"], fields["samples_optimizer_s"]))
    assert 0.5 * phases < fields["time_step_s"] < 2 * phases


def test_warmup_runs_until_the_rounds_and_the_minimum_time() -> None:
    run = StepBenchmark(tiny_case(), CpuDevice(threads=1), batch_size=2, input_size=16)
    steps: list[int] = []
    phased, whole = run._step, run._whole_step
    run._step = lambda record: (steps.append(1), phased(record))[1]  # type: ignore[method-assign]
    run._whole_step = lambda: (steps.append(1), whole())[1]  # type: ignore[method-assign]
    run.warmup(2)
    assert len(steps) == 2 and run.first_step_s is not None
    steps.clear()
    started = time.perf_counter()
    run.warmup(1, min_seconds=0.3)
    assert time.perf_counter() - started >= 0.3 and len(steps) > 2  # one step alone is ~1 ms
    assert not any(run.samples[p] for p in PHASES) and not run.whole  # warm-up records nothing


def test_step_trains_only_trainable_parameters() -> None:
    def half_frozen(num_classes: int, image_size: int) -> nn.Module:
        net = tiny_net(num_classes, image_size)
        for p in net[0].parameters():
            p.requires_grad_(False)
        return net

    run = StepBenchmark(tiny_case(builder=half_frozen), CpuDevice(threads=1), batch_size=4, input_size=32)
    frozen = run.model[0].weight.clone()
    head = run.model[-1].weight.clone()
    run.warmup(2)
    assert torch.equal(run.model[0].weight, frozen)
    assert not torch.equal(run.model[-1].weight, head)


def test_tcel_step_runs_three_forwards() -> None:
    calls = []

    def counting(num_classes: int, image_size: int) -> nn.Module:
        net = tiny_net(num_classes, image_size)
        net.register_forward_hook(lambda *a: calls.append(1))
        return net

    case = tiny_case(loss="tcel", builder=counting)
    assert synthetic_batch(case, 2, 32, 5, 0).positives is not None
    run = StepBenchmark(case, CpuDevice(threads=1), batch_size=2, input_size=32)
    calls.clear()
    run.train_step()
    assert len(calls) == 3


def test_non_finite_loss_is_an_error() -> None:
    class Nan(nn.Module):
        def __init__(self, num_classes: int, image_size: int) -> None:
            super().__init__()
            self.fc = nn.Linear(3, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.mean((2, 3))) * float("nan")

    run = StepBenchmark(tiny_case(builder=Nan), CpuDevice(threads=1), batch_size=2, input_size=8)
    with pytest.raises(FloatingPointError, match="non-finite"):
        run.train_step()


def test_inference_median_agrees_with_torch_utils_benchmark_timer() -> None:
    """The harness's phase timing against a bare torch.utils.benchmark.Timer of the same callable.

    The inference phase is used because its callable is self-contained: a training forward leaves an
    autograd graph whose release the harness (rightly) leaves to the backward phase, while a Timer loop
    would charge it to the next forward."""
    def wide(num_classes: int, image_size: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))

    dev = CpuDevice(threads=1)
    run = StepBenchmark(tiny_case(builder=wide), dev, batch_size=8, input_size=48)
    model, images = run.model, run.batch.images
    timer = tbench.Timer(stmt="with torch.no_grad(): model(images)",
                         globals={"model": model, "images": images, "torch": torch}, num_threads=1)
    # Each side's fastest sample, not its median: a neighbour's load only ever adds time, so the minima are
    # the two timers' estimates of the same uncontended cost, while medians on a shared 2-core runner moved
    # 5-11 % apart (0.89, 0.93, 1.05 in one CI run) with no change in either timer.
    ratios = []
    with dev.settings():
        run.run_inference(rounds=0, warmup_rounds=3)
        for _attempt in range(5):  # a busy neighbour can spoil one attempt; five spoiled ones is a bug
            ours, theirs = [], []
            # Interleaved one by one, so that both see the same machine when the load drifts.
            for _ in range(25):
                run.samples["inference"].clear()
                run.run_inference(rounds=1, warmup_rounds=0)
                ours.append(run.samples["inference"][0])
                theirs.append(timer.timeit(number=1).median)
            ratios.append(min(ours) / min(theirs))
            if abs(ratios[-1] - 1) <= 0.05:
                break
    assert abs(ratios[-1] - 1) <= 0.05, f"harness/Timer fastest-sample ratios {ratios}"


# -- telemetry, energy, efficiency ----------------------------------------------------------------------
class _Counter:
    """A cumulative energy counter that advances by 2 J per read: each window reads it twice."""

    name, resolution_j, update_interval_s = "fake", 1e-3, 0.0

    def __init__(self) -> None:
        self.joules = 0.0

    def read_joules(self) -> float:
        self.joules += 2.0
        return self.joules


class _InstrumentedCpu(CpuDevice):
    """The real CPU device with telemetry and an energy counter, as a GPU would have them."""

    def __init__(self, snapshots: list[dict], counter: object) -> None:
        super().__init__(threads=1)
        self.snapshots, self.counter = snapshots, counter

    def telemetry(self):  # type: ignore[override]
        return self.snapshots.pop(0)

    def energy_counter(self):  # type: ignore[override]
        import contextlib

        return contextlib.nullcontext(self.counter)


def test_telemetry_and_energy_reach_the_record() -> None:
    calm = {"throttled": False, "clock_event_reasons": ["gpu_idle"], "clock_sm_mhz": 1980}
    hot = {"throttled": True, "clock_event_reasons": ["sw_power_cap"], "clock_sm_mhz": 1410}
    dev = _InstrumentedCpu([calm, hot], _Counter())
    run = StepBenchmark(tiny_case(), dev, batch_size=4, input_size=32)
    run.warmup(1)
    run.snapshot("before")
    run.train_step()
    run.whole_step()
    run.snapshot("after")
    run.measure_energy(min_seconds=0.01, min_rounds=3)
    out = run.record_fields()
    assert out["gpu_before"] == calm and out["gpu_after"] == hot
    assert out["throttled"] is True and out["throttle_reasons"] == ["sw_power_cap"]
    # each window: rounds until both minimums, the counter read at each end (advancing 2 J per read)
    assert out["energy_step_j"] is not None and out["energy_inference_j"] is not None
    assert out["energy_step_j"] > 0 and out["power_step_w"] is not None and out["power_step_w"] > 0
    assert "energy_unavailable" not in out


def test_energy_unavailable_is_a_reason_not_zero() -> None:
    from bench.measure.energy import Unavailable

    dev = _InstrumentedCpu([], Unavailable("NVML: Not Supported"))
    run = StepBenchmark(tiny_case(), dev, batch_size=4, input_size=32)
    run.measure_energy(min_seconds=0.01, min_rounds=3)
    out = run.record_fields()
    assert out["energy_unavailable"] == "NVML: Not Supported" and "energy_step_j" not in out
    assert "gpu_before" not in out  # no telemetry on this device: no fields, not fields of None


def test_efficiency_counts_flops_at_the_runs_input_and_batch() -> None:
    from bench.measure.flops import static_cost

    run = StepBenchmark(tiny_case(), CpuDevice(threads=1), batch_size=4, input_size=16)
    run.warmup(1)
    run.train_step()
    run.whole_step()
    run.run_inference(1, 0)
    run.measure_efficiency()
    out = derived(run)
    macs_16 = static_cost(tiny_net(5, 16), 16).macs_forward
    assert macs_16 < static_cost(tiny_net(5, 32), 32).macs_forward  # not the native 32-px count
    assert out["flops_forward"] == 2 * macs_16 * 4
    assert out["flops_backward"] == 2 * out["flops_forward"]  # estimated, as documented
    assert out["tflops_forward"] == pytest.approx(out["flops_forward"] / out["time_forward_s"] / 1e12)
    assert out["tflops_step"] == pytest.approx(3 * out["flops_forward"] / out["time_step_s"] / 1e12)
    assert out["mfu_forward"] is None and out["peak_tflops"] is None  # no datasheet peak for a CPU
    assert "CPU" in str(out["peak_source"])


def test_tcel_counts_three_model_calls_per_forward() -> None:
    run = StepBenchmark(tiny_case("tcel"), CpuDevice(threads=1), batch_size=4, input_size=16)
    run.measure_efficiency()
    one = StepBenchmark(tiny_case(), CpuDevice(threads=1), batch_size=4, input_size=16)
    one.measure_efficiency()
    assert run.record_fields()["flops_forward"] == 3 * one.record_fields()["flops_forward"]
