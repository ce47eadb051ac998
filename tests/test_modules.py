"""The per-module breakdown (bench/measure/modules.py): real CPU runs on small models, the CUDA marks against the
fake, ``bench profile``, ``pytest bench/ --bench-modules`` and ``bench ab --bench-modules`` end to end."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from fake_cuda import FakeCuda, FakeGpu
from torch import nn

from bench import commands as cli
from bench.measure.devices import CpuDevice, CudaDevice
from bench.measure.flops import count_macs, count_params
from bench.measure.harness import StepBenchmark
from bench.measure.modules import Breakdown, assemble, select_modules
from bench.record.derive import step_fields
from suites.registry import get_case

ROOT = Path(__file__).resolve().parents[1]
SLEEP_S = 0.05


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """One intra-op thread, as the benchmarks pin it: on a busy 2-core machine two OpenMP threads wait
    for each other for whole scheduler slices, and a tiny convolution then takes milliseconds."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class _Sleep(torch.autograd.Function):
    """Identity that sleeps in forward and in backward: a module made deliberately slow."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        time.sleep(SLEEP_S)
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        time.sleep(SLEEP_S)
        return grad


class Slow(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Sleep.apply(self.conv(x))


def toy(slow: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True)),
        Slow(8) if slow else nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True)),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


def run_rounds(model: nn.Module, depth: int, rounds: int, x: torch.Tensor,
               device: Any = None) -> tuple[Breakdown, list[dict[str, Any]]]:
    breakdown = Breakdown(model, depth, device or CpuDevice(threads=1))

    def forward() -> torch.Tensor:
        return model(x).square().mean()

    samples = [breakdown.round(forward, lambda loss: loss.backward()) for _ in range(rounds + 1)]
    return breakdown, samples[1:]  # the first, as in the harness, is a warm-up


def fields(model: nn.Module, depth: int = 2, rounds: int = 3, size: int = 16) -> dict[str, Any]:
    x = torch.randn(2, 3, size, size)
    breakdown, samples = run_rounds(model, depth, rounds, x)
    static = breakdown.static((3, size, size), lambda: model(x).square().mean())
    return assemble(static, samples)


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in result["modules"]}


# -- which modules ---------------------------------------------------------------------------------------


def test_depth_selects_top_level_children_then_their_blocks() -> None:
    model = toy()
    one = [(e.name, e.depth, e.leaf) for e in select_modules(model, 1)]
    assert one == [("", 0, False), ("0", 1, True), ("1", 1, True), ("2", 1, True), ("3", 1, True), ("4", 1, True),
                   ("5", 1, True)]
    two = {e.name: e for e in select_modules(model, 2)}
    assert {"0.0", "0.1", "0.2", "1.0", "1.1", "2.2"} <= set(two)
    assert not two["0"].leaf and two["0.0"].leaf and two["0.0"].depth == 2 and two["5"].leaf
    with pytest.raises(ValueError, match="at least 1"):
        select_modules(model, 0)


def test_real_cases_name_their_stages_blocks_and_special_modules() -> None:
    resnet = {e.name: e for e in select_modules(get_case("flowers_resnet18_deform_after_conv1").build(image_size=64), 2)}
    assert type(resnet["conv1.1"].module).__name__ == "DCNv1" and resnet["conv1.1"].leaf
    assert {"conv1", "bn1", "relu", "layer1", "layer1.0", "layer4.1", "fc"} <= set(resnet)
    assert "layer1.0.conv1" not in resnet
    vit = {e.name: e for e in select_modules(get_case("flowers_vit_b_16").build(image_size=64), 2)}
    # encoder.layers groups the blocks: not listed, its blocks take depth 2
    assert "encoder.layers" not in vit
    assert vit["encoder.layers.encoder_layer_11"].depth == 2 and vit["encoder.layers.encoder_layer_0"].leaf
    assert {"conv_proj", "encoder", "heads", "heads.head", "encoder.ln"} <= set(vit)
    deeper = {e.name for e in select_modules(get_case("flowers_vit_b_16").build(image_size=64), 3)}
    assert "encoder.layers.encoder_layer_0.self_attention" in deeper


# -- static: MACs, parameters, activation memory ---------------------------------------------------------


def test_macs_and_params_of_the_leaves_sum_to_the_model() -> None:
    model = toy()
    result = fields(model, rounds=1)
    modules = by_name(result)
    leaves = [m for m in result["modules"] if m["leaf"]]
    total_macs, _, _ = count_macs(model, (torch.zeros(1, 3, 16, 16),))
    assert sum(m["macs_forward"] for m in leaves) == modules[""]["macs_forward"] == total_macs > 0
    total, trainable = count_params(model)
    assert sum(m["params_total"] for m in leaves) == modules[""]["params_total"] == total
    assert sum(m["params_trainable"] for m in leaves) == trainable
    assert modules["0"]["macs_forward"] == modules["0.0"]["macs_forward"] > 0  # BN and ReLU count 0


def test_deformable_and_attention_macs_are_counted_per_module() -> None:
    case = get_case("flowers_resnet18_deform_after_conv1")
    run = StepBenchmark(case, CpuDevice(threads=1), 2, 32)
    try:
        run.modules_prepare(2)
        static = {m["name"]: m for m in run.measure_modules_static()["modules"]}
    finally:
        run.close()
    total, by_op, _ = count_macs(run.module, (torch.zeros(1, 3, 32, 32),))
    assert by_op.get("deform_conv2d", 0) > 0
    leaves = [m for m in static.values() if m["leaf"]]
    assert sum(m["macs_forward"] for m in leaves) == static[""]["macs_forward"] == total
    dcn = static["conv1.1"]
    assert dcn["type"] == "DCNv1" and dcn["macs_forward"] >= by_op["deform_conv2d"] > 0
    assert dcn["mem_activation_bytes"] > 0


def test_activation_bytes_positive_for_convolutions_zero_for_a_frozen_input_part() -> None:
    torch.manual_seed(0)
    frozen = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    for p in frozen.parameters():
        p.requires_grad_(False)
    model = nn.Sequential(frozen, nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8 * 12 * 12, 3))
    modules = by_name(fields(model, depth=1, rounds=1))
    # nothing before the first trainable layer needs a gradient: nothing is saved for backward there
    assert modules["0"]["mem_activation_bytes"] == 0 and modules["0"]["params_trainable"] == 0
    # the convolution saves its input (8 × 14 × 14 floats per image) for its weight's gradient
    assert modules["1"]["mem_activation_bytes"] >= 2 * 8 * 14 * 14 * 4
    assert modules["3"]["mem_activation_bytes"] > 0
    assert modules[""]["mem_activation_bytes"] >= modules["1"]["mem_activation_bytes"]


# -- timing ----------------------------------------------------------------------------------------------


def test_a_slow_module_dominates_forward_and_backward() -> None:
    result = fields(toy(slow=True), rounds=3)
    modules = by_name(result)
    for phase in ("forward", "backward"):
        share = modules["1"][f"share_{phase}"]
        assert share > 0.6, (phase, share)
        others = [m[f"share_{phase}"] for m in result["modules"] if m["depth"] == 1 and m["name"] != "1"]
        assert share > 5 * max(others), (phase, share, others)
        assert modules["1"][f"time_{phase}_s"] >= SLEEP_S * 0.95
        # the slow part is the custom Function, inside Slow but outside its convolution
        assert modules["1.conv"][f"time_{phase}_s"] < SLEEP_S / 2


def test_coverage_samples_and_medians_of_a_sequential() -> None:
    torch.manual_seed(0)
    # convolutions of ~10 ms each, so that neither the hooks' microseconds nor a busy machine's hiccups
    # decide the ratio
    model = nn.Sequential(nn.Conv2d(3, 48, 3, padding=1), nn.ReLU(), nn.Conv2d(48, 48, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(48, 48, 3, padding=1), nn.Flatten(), nn.Linear(48 * 48 * 48, 4))
    rounds = 9  # medians of enough rounds that another process's burst does not pick them
    result = fields(model, depth=1, rounds=rounds, size=48)
    for phase in ("forward", "backward"):
        # within each round the leaves cover the phase but for the loss and the engine's scheduling
        assert 0.5 <= result["modules_coverage_per_round"][phase] <= 1.05, result["modules_coverage_per_round"]
        # the ratio of medians is the same on a quiet machine; on a busy one (load 5 on these 2 cores) it
        # ranged 0.54-0.95 over eight runs while the per-round ratio stayed within 0.93-0.97
        assert 0.2 <= result["modules_coverage"][phase] <= 1.6, (result["modules_coverage"],
                                                                  result["modules_phase_samples_s"])
        assert len(result["modules_phase_samples_s"][phase]) == rounds
    for m in result["modules"]:
        for phase in ("forward", "backward"):
            samples = m[f"samples_{phase}_s"]
            assert len(samples) == rounds and all(s >= 0 for s in samples)
            assert m[f"time_{phase}_s"] == pytest.approx(statistics.median(samples))
        assert m["calls"] == 1
    convs = [m for m in result["modules"] if m["type"] == "Conv2d"]
    assert all(m["time_backward_s"] > 0 for m in convs)


def test_in_place_relu_after_batchnorm_and_a_module_called_twice() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
            self.block = nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.block(self.block(self.stem(x)))
            return self.head(x.mean((2, 3)))

    modules = by_name(fields(Twice(), depth=2, rounds=2))
    assert modules["block"]["calls"] == 2 and modules["stem"]["calls"] == 1
    # the BatchNorm's output is overwritten by the in-place ReLU; its backward is still found
    assert modules["stem.1"]["time_backward_s"] > 0 and modules["block"]["time_backward_s"] > 0


def test_cuda_marks_are_events_on_the_measured_devices_stream_read_after_synchronising() -> None:
    cuda = FakeCuda([FakeGpu("A", "a"), FakeGpu("B", "b")])
    device = CudaDevice(1, cuda=cuda, cudnn=object(), nvml=object())
    watch = device.stopwatch()
    with cuda.device(1):
        start = watch.mark()
        cuda.launch(1, 2.0)  # a 2 ms kernel between the marks
        end = watch.mark()
    assert start.device == end.device == 1
    with pytest.raises(RuntimeError, match="not ready"):
        watch.seconds(start, end)  # marks never wait: nothing is read before settle()
    watch.settle()
    assert watch.seconds(start, end) == pytest.approx(0.002, abs=1e-4)
    assert "synchronize:1" in cuda.log
    # a whole breakdown round through the CUDA device (the model on the CPU, times from the fake's events)
    model = toy()
    with cuda.device(1):
        breakdown, samples = run_rounds(model, 2, 1, torch.randn(2, 3, 8, 8), device=device)
    assert set(samples[0]["modules"]) == {e.name for e in breakdown.entries}
    assert all(e.device == 1 for e in cuda.events)


# -- the harness, bench profile, pytest bench/, bench ab -----------------------------------------------------


def test_step_benchmark_breakdown_fields_fit_the_record() -> None:
    from bench.record.schema import Record

    case = get_case("dogbreed_cnn")
    device = CpuDevice(threads=1)
    run = StepBenchmark(case, device, 2, 32)
    try:
        run.warmup(1)
        for _ in range(2):
            run.train_step()
            run.whole_step()
        run.modules_prepare(1)
        run.measure_modules_static()
        for _ in range(3):
            run.modules_round()
        out = run.record_fields()
    finally:
        run.close()
    record = Record(case="dogbreed_cnn", suite="dogbreed", kind="step", profile="smoke", device="cpu", batch_size=2)
    record.update(out)
    record.update(step_fields(record))
    record.update(run.modules_fields({p: record.median(p) for p in ("forward", "backward")}))
    assert record.modules_depth == 1 and record.modules is not None
    names = [m["name"] for m in record.modules]
    assert names[0] == "" and "layer7" in names and "fc" in names
    assert all(len(m["samples_forward_s"]) == 3 for m in record.modules)
    assert record.modules_coverage is not None and set(record.modules_coverage) == {"forward", "backward"}
    assert record.modules_overhead is not None and record.modules_overhead["forward"] > 0
    again = Record.from_extra_info(json.loads(json.dumps(record.to_extra_info())))
    assert again.modules == record.modules


def test_bench_profile_prints_every_module_and_the_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["profile", "dogbreed_cnn", "--rounds", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for name in ["layer1", "layer1.0", "layer1.1", "layer1.2", "layer7.2", "pool", "flatten", "fc", "log_softmax"]:
        assert name in out
    assert "fwd (ms)" in out and "bwd (ms)" in out and "activation (MiB)" in out
    assert "coverage" in out and "forward" in out and "backward" in out and "overhead" in out


def test_bench_profile_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["profile", "dogbreed_cnn", "--rounds", "2", "--depth", "1", "--threads", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["case"] == "dogbreed_cnn" and data["modules_depth"] == 1 and data["batch_size"] == 2
    assert data["input_size"] == 64 and len(data["samples_forward_s"]) == 2 == len(data["modules_phase_samples_s"]["forward"])
    assert {m["depth"] for m in data["modules"]} == {0, 1}
    assert set(data["modules_coverage"]) == {"forward", "backward"}


def test_bench_profile_unknown_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["profile", "no_such_case"]) == 2


def test_pytest_bench_modules_end_to_end_and_a_failing_breakdown_keeps_the_record(tmp_path: Path) -> None:
    from test_plugin import by_name as benchmarks
    from test_plugin import run_bench

    proc, data = run_bench(tmp_path, "--bench-kind=step", "--bench-modules", "--bench-modules-depth=1",
                           "--bench-fail=mobilenet_v1_025_224:modules",
                           cases=["dogbreed_cnn", "mobilenet_v1_025_224"])
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = benchmarks(data)
    ok = found["test_step[dogbreed_cnn]"]["extra_info"]
    assert ok["status"] == "ok" and ok["modules_depth"] == 1
    names = [m["name"] for m in ok["modules"]]
    assert names == ["", "layer1", "layer2", "layer3", "layer4", "layer5", "layer6", "layer7", "pool", "flatten",
                     "fc", "log_softmax"]
    assert all(len(m["samples_backward_s"]) == 2 for m in ok["modules"])  # --bench-rounds 2
    assert 0 < ok["modules_coverage"]["forward"] <= 1.5 and 0 < ok["modules_coverage"]["backward"] <= 1.5
    failed = found["test_step[mobilenet_v1_025_224]"]["extra_info"]
    assert failed["status"] == "error" and "injected" in failed["error"]
    assert failed["time_forward_s"] is not None and failed["mem_step_peak_bytes"] is not None
    assert failed["modules"] is None


def test_bench_ab_pairs_breakdown_rounds_and_a_failing_breakdown_keeps_the_record(tmp_path: Path) -> None:
    from test_plugin import by_name as benchmarks

    from bench.commands import ab
    from bench.commands.compare import OutputOptions
    from bench.measure.ab import AbSettings
    from bench.record.options import FailSpec, RunOptions

    out = tmp_path / "out"
    settings = AbSettings(
        sides={"base": str(ROOT), "head": str(ROOT)},
        options=RunOptions(kind="step", rounds=3, cases=("dogbreed_cnn",), threads=1, modules=True, modules_depth=1,
                           fail=(FailSpec("dogbreed_cnn", "modules", "head"),)),
        output=out, workers=2, turn_gap_s=0.0,
    )
    ab.run(settings, output=OutputOptions(json=out / "verdicts.json"), repo=ROOT)
    base = benchmarks(json.loads((out / "base.json").read_text()))["test_step[dogbreed_cnn]"]["extra_info"]
    assert base["status"] == "ok" and base["modules_depth"] == 1
    names = [m["name"] for m in base["modules"]]
    assert names[:3] == ["", "layer1", "layer2"] and names[-1] == "log_softmax"
    assert all(len(m["samples_forward_s"]) == 3 for m in base["modules"])  # both workers' rounds, in order
    assert len(base["modules_phase_samples_s"]["backward"]) == 3
    assert set(base["modules_coverage"]) == {"forward", "backward"}
    head = benchmarks(json.loads((out / "head.json").read_text()))["test_step[dogbreed_cnn]"]["extra_info"]
    assert head["status"] == "error" and "modules" in head["error"] and "injected" in head["error"]
    assert head["time_forward_s"] is not None and len(head["samples_forward_s"]) == 3
    assert head["modules"] is None
