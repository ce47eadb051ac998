"""Execution modes (bench/record/modes.py, bench/measure/executor.py): precision, memory format and torch.compile, run for real on the CPU
through the harness, the trainer, ``pytest bench/`` and ``bench ab``; what is recorded; what makes two
runs comparable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from measuring import fields
from results_factory import find, results_json, standard_run, write_json
from torch import nn

from bench.commands import ab
from bench.commands.compare import OutputOptions
from bench.judge.verdicts import compare_runs
from bench.measure.ab import AbSettings
from bench.measure.devices import CpuDevice
from bench.measure.executor import CompileError, Executor, numerics_for
from bench.measure.harness import StepBenchmark
from bench.record.exits import EXIT_UNUSABLE
from bench.record.modes import ModeError, Modes, ModeUnavailable
from bench.record.options import RunOptions
from bench.record.results import load_results, parse_results
from bench.record.schema import Record
from suites.case import Case, Regime, Reported, Stage
from suites.registry import get_case

ROOT = Path(__file__).resolve().parents[1]
DEVICE = CpuDevice(threads=1)


def tiny_net(num_classes: int, image_size: int) -> nn.Module:
    """The smallest model worth compiling: one conv, one linear (compiles in ~2 s on a 2-core VM)."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))


TINY = Case(name="tiny", suite="dogbreed", builder=tiny_net, input_size=8, in_channels=3, num_classes=3,
            regime=Regime(loss="cross_entropy", optimizer="sgd", stages=(Stage(1.0, 1e-2),)),
            reported=Reported(source="test"))


def step_run(case: Case, modes: Modes, *, input_size: int = 32) -> StepBenchmark:
    return StepBenchmark(case, DEVICE, batch_size=2, input_size=input_size, modes=modes)


# -- what may be asked for -----------------------------------------------------------------------------


def test_unknown_mode_names_its_option() -> None:
    with pytest.raises(ModeError, match="--bench-precision 'fp64'"):
        Modes(precision="fp64")  # type: ignore[arg-type]
    with pytest.raises(ModeError, match="--bench-memory-format"):
        Modes(memory_format="nhwc")  # type: ignore[arg-type]
    assert RunOptions().modes == Modes()


@pytest.mark.parametrize("modes, option", [
    (Modes(precision="fp16"), "--bench-precision fp16"),
    (Modes(precision="tf32"), "--bench-precision tf32"),
    (Modes(compile="reduce-overhead"), "--bench-compile reduce-overhead"),
])
def test_cpu_refuses_gpu_only_modes_naming_the_option(modes: Modes, option: str) -> None:
    from test_devices import cuda_device

    with pytest.raises(ModeUnavailable, match=option):
        DEVICE.check_modes(modes)
    cuda_device()[0].check_modes(modes)  # all of them are GPU modes


def test_cpu_runs_fp32_bf16_channels_last_and_compile() -> None:
    for modes in (Modes(), Modes(precision="bf16"), Modes(memory_format="channels_last"),
                  Modes(compile="default"), Modes(compile="max-autotune")):
        DEVICE.check_modes(modes)


def test_fp16_on_the_cpu_is_a_pytest_usage_error() -> None:
    """Before any case runs (the other CPU refusals take the same path: Device.check_modes above)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q", "--bench-device", "cpu",
         "--bench-case", "dogbreed_cnn", "--bench-precision", "fp16"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]  # pytest's usage error
    assert "--bench-precision fp16 is not available on the cpu" in proc.stderr


# -- numerics ------------------------------------------------------------------------------------------


def test_precision_sets_tf32_flags_in_a_scope_that_restores_them() -> None:
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (torch.get_float32_matmul_precision(), matmul.allow_tf32, cudnn.allow_tf32)
    try:
        torch.set_float32_matmul_precision("high")  # torch's defaults otherwise, but TF32 everywhere
        cudnn.allow_tf32 = True
        with numerics_for("fp32"):
            assert (matmul.allow_tf32, cudnn.allow_tf32, torch.get_float32_matmul_precision()) == (False, False, "highest")
        assert (matmul.allow_tf32, cudnn.allow_tf32, torch.get_float32_matmul_precision()) == (True, True, "high")
        torch.set_float32_matmul_precision("highest")
        cudnn.allow_tf32 = False
        with numerics_for("tf32"):
            assert (matmul.allow_tf32, cudnn.allow_tf32, torch.get_float32_matmul_precision()) == (True, True, "high")
        assert (matmul.allow_tf32, cudnn.allow_tf32, torch.get_float32_matmul_precision()) == (False, False, "highest")
        # a caller who mixed the legacy flags with the per-backend API has no single precision to save:
        # the scope still sets its own and restores the flags
        torch.set_float32_matmul_precision("medium")
        matmul.allow_tf32 = True
        with numerics_for("fp32"):
            assert (matmul.allow_tf32, torch.get_float32_matmul_precision()) == (False, "highest")
        assert matmul.allow_tf32 is True
        torch.set_float32_matmul_precision("highest")
        # the executor records what its scope ran under, read inside it
        executor = Executor(Modes(precision="tf32"), "cuda")
        torch.backends.cudnn.benchmark = True
        with executor.scope():
            pass
        assert executor.observed is not None
        assert executor.observed.tf32_matmul and executor.observed.tf32_cudnn
        assert executor.observed.float32_matmul_precision == "high" and executor.observed.cudnn_benchmark
    finally:
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision(saved[0])
        matmul.allow_tf32, cudnn.allow_tf32 = saved[1], saved[2]


# -- precision and memory format, for real --------------------------------------------------------------


def _conv_io(run: StepBenchmark) -> dict[str, torch.Tensor]:
    """Run one phased step and catch the first convolution's input and output."""
    conv = next(m for m in run.module.modules() if isinstance(m, nn.Conv2d))
    seen: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen.setdefault("input", args[0])
        seen.setdefault("output", out)

    handle = conv.register_forward_hook(hook)
    try:
        run.train_step()
    finally:
        handle.remove()
    return seen


def test_bf16_runs_the_forward_in_bf16_with_fp32_weights() -> None:
    case = get_case("dogbreed_cnn")
    fp32, bf16 = step_run(case, Modes()), step_run(case, Modes(precision="bf16"))
    assert _conv_io(fp32)["output"].dtype == torch.float32
    assert _conv_io(bf16)["output"].dtype == torch.bfloat16  # autocast ran the convolution in bf16
    assert all(p.dtype == torch.float32 for p in bf16.module.parameters())  # master weights stay fp32
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in bf16.module.parameters())
    assert bf16.executor.scaler is None  # bf16 needs no loss scaling
    recorded = bf16.record_fields()
    assert recorded["precision"] == "bf16" and recorded["tf32_matmul"] is False
    assert recorded["float32_matmul_precision"] == "highest"


def test_channels_last_converts_weights_and_inputs() -> None:
    case = get_case("dogbreed_cnn")
    default, cl = step_run(case, Modes()), step_run(case, Modes(memory_format="channels_last"))
    channels_last = torch.channels_last
    conv_weights = [m.weight for m in cl.module.modules() if isinstance(m, nn.Conv2d)]
    assert conv_weights and all(w.is_contiguous(memory_format=channels_last) for w in conv_weights)
    assert not default.batch.images.is_contiguous(memory_format=channels_last)
    assert cl.batch.images.is_contiguous(memory_format=channels_last)
    seen = _conv_io(cl)
    assert seen["input"].is_contiguous(memory_format=channels_last)
    assert seen["output"].is_contiguous(memory_format=channels_last)  # the layout carries through the net
    assert cl.record_fields()["memory_format"] == "channels_last"


def test_channels_last_leaves_other_ranks_alone() -> None:
    """Only 4-D tensors have a channels-last layout: a 5-D kernel bank (dynconv's varconv) made
    ``Module.to(memory_format=...)`` raise; 2-D and 3-D parameters (ViT's embeddings) stay as they are."""
    bank = nn.Module()
    bank.kernels = nn.Parameter(torch.randn(2, 4, 3, 3, 3))
    bank.embedding = nn.Parameter(torch.randn(1, 5, 8))
    bank.conv = nn.Conv2d(3, 4, 3)
    executor = Executor(Modes(memory_format="channels_last"), "cpu")
    kernels = bank.kernels
    assert executor.prepare(bank) is bank and bank.kernels is kernels  # same parameter objects
    assert bank.kernels.is_contiguous() and bank.embedding.is_contiguous()
    assert bank.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert executor.input(torch.randn(2, 5, 8)).is_contiguous()


@pytest.mark.slow
def test_channels_last_and_bf16_run_the_attention_and_deformable_cases() -> None:
    """ViT-B/16 (a 4-D patch convolution, then 3-D tokens) and a deformable case, one step each; the
    deformable convolution has no bf16 CPU kernel and runs in fp32 under autocast, as torchvision does on CUDA."""
    for name in ("flowers_vit_b_16", "dogbreed_deformable"):
        run = step_run(get_case(name), Modes(precision="bf16", memory_format="channels_last"))
        run.warmup(1)
        run.train_step()
        assert run.samples["forward"], name


def test_fp16_scaler_skips_an_overflowed_step_and_counts_it() -> None:
    """The scaler's skip, driven on the CPU (fp16 is refused there for benchmarks, not for the scaler)."""
    executor = Executor(Modes(precision="fp16"), "cpu")
    assert executor.scaler is not None
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()

    def backward(poison: bool) -> None:
        optimizer.zero_grad()
        executor.backward(model(torch.ones(2, 3)).sum())
        if poison:
            model.weight.grad[0, 0] = float("inf")  # type: ignore[index]

    backward(poison=True)
    assert executor.step(optimizer) is False and executor.skipped_steps == 1
    assert torch.equal(model.weight, before)  # the update was skipped
    backward(poison=False)
    assert executor.step(optimizer) is True and executor.skipped_steps == 1
    assert not torch.equal(model.weight, before)
    assert executor.record_fields()["amp_skipped_steps"] == 1


# -- torch.compile -----------------------------------------------------------------------------------------


def _compiled_case() -> dict[str, Any]:
    run = step_run(TINY, Modes(compile="default"), input_size=8)
    try:
        assert isinstance(run.model, torch._dynamo.eval_frame.OptimizedModule)
        run.warmup(1)
        run.train_step()
        run.whole_step()
        run.run_inference(1, 1)
        run.measure_memory()
        measured = fields(run)
    finally:
        run.close()
    # bench ab's worker reads the record after closing the case: the reset must not zero the accounting
    assert fields(run) == measured
    return measured


def test_compile_records_compile_time_recompiles_and_first_step() -> None:
    first = _compiled_case()
    assert first["compile"] == "default"
    assert first["compile_time_s"] > 0.1
    # the first step compiled forward and backward; the timed steps did not
    assert first["first_step_s"] > 10 * first["time_step_s"]
    # eval-mode inference without autograd needs a graph of its own: one recompile, and only that
    assert first["compile_recompiles"] == 1
    assert "grad_mode" in first["compile_recompile_reasons"][0]
    assert first["mem_step_peak_bytes"] > 0
    # A second case after the reset compiles from scratch: without torch._dynamo.reset() it would run
    # the first case's graph (same code object) and record no compilation at all.
    second = _compiled_case()
    assert second["compile_recompiles"] == 1 and second["compile_time_s"] > 0.1
    assert second["first_step_s"] > 10 * second["time_step_s"]


def test_compile_failure_is_a_compile_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inductor's CPU backend needs a C++ compiler; without one the case fails with a short message."""
    import torch._inductor.config as inductor_config

    import bench.measure.executor

    monkeypatch.setattr(bench.measure.executor, "_WARMED", {"cpu"})  # the case's own compile is what fails
    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, "/nonexistent/g++"))
    run = step_run(TINY, Modes(compile="default"), input_size=8)
    try:
        with pytest.raises(CompileError, match=r"torch.compile\(mode='default'\) failed: .*C\+\+ compiler"):
            run.warmup(1)
    finally:
        run.close()


def test_compile_failure_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q", f"--benchmark-json={out}",
         "--bench-profile", "smoke", "--bench-rounds", "2", "--bench-threads", "1", "--bench-kind", "step",
         "--bench-compile", "default", "--bench-case", "dogbreed_cnn", "--bench-case", "dogbreed_dsc"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "CXX": "/nonexistent/g++"},
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # failed cases, not a crash
    # Every case failed before its first timed round: pytest-benchmark would write no JSON of its own, and
    # an older file at that path would pass for this run's. The run's own file holds every failure, and
    # the partial file each case as it finished.
    data = json.loads(out.read_text())
    assert data["benchmarks"] == []
    assert {b["name"] for b in data["archbench_failed"]} == {"test_step[dogbreed_cnn]", "test_step[dogbreed_dsc]"}
    lines = Path(f"{out}.partial.jsonl").read_text().splitlines()
    records = {e["name"]: e["extra_info"] for e in map(json.loads, lines)}
    assert set(records) == {"test_step[dogbreed_cnn]", "test_step[dogbreed_dsc]"}
    for record in records.values():
        assert record["status"] == "error" and record["compile"] == "default"
        assert record["error"].startswith("CompileError: torch.compile(mode='default') failed"), record["error"]


# -- recorded by pytest bench/ and bench ab --------------------------------------------------------------


def test_pytest_bench_records_the_modes(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q", f"--benchmark-json={out}",
         "--bench-profile", "smoke", "--bench-rounds", "3", "--bench-epochs", "1", "--bench-threads", "1",
         "--bench-case", "dogbreed_dsc", "--bench-precision", "bf16", "--bench-memory-format", "channels_last",
         "--bench-warmup-time", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    info = data["machine_info"]["archbench"]
    assert (info["precision"], info["memory_format"], info["compile"]) == ("bf16", "channels_last", "none")
    assert info["profile_settings"]["warmup_min_s"] == 0.2
    benches = {b["name"]: b for b in data["benchmarks"]}
    step, train = benches["test_step[dogbreed_dsc]"]["extra_info"], benches["test_train[dogbreed_dsc]"]["extra_info"]
    for record in (step, train):
        assert (record["precision"], record["memory_format"], record["compile"]) == ("bf16", "channels_last", "none")
        assert record["tf32_matmul"] is False and record["tf32_cudnn"] is False
        assert record["float32_matmul_precision"] == "highest"
    # read inside each measurement: the trainer runs with cuDNN determinism on, timing without
    assert train["cudnn_deterministic"] is True and step["cudnn_deterministic"] is False
    assert len(step["samples_step_s"]) == 3 and step["time_step_s"] > 0
    assert step["first_step_s"] > 0 and step["mem_step_peak_bytes"] > 0
    assert step["compile_time_s"] is None and step["compile_recompiles"] is None
    assert benches["test_step[dogbreed_dsc]"]["stats"]["rounds"] == 3
    assert parse_results(data, str(out)).env.precision == "bf16"


def test_bench_ab_forwards_and_records_the_modes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = AbSettings(
        sides={"base": str(ROOT), "head": str(ROOT)},
        options=RunOptions(kind="step", rounds=2, cases=("dogbreed_dsc",), threads=1, precision="bf16",
                           memory_format="channels_last"),
        output=out, workers=1, turn_gap_s=0.0,
    )
    assert ab.run(settings, output=OutputOptions(json=out / "verdicts.json"), repo=ROOT) == 0
    for side in ("base", "head"):
        results = load_results(out / f"{side}.json")
        assert (results.env.precision, results.env.memory_format) == ("bf16", "channels_last")
        record = results.benchmarks["test_step[dogbreed_dsc]"].record
        assert (record.precision, record.memory_format, record.compile) == ("bf16", "channels_last", "none")
        assert record.tf32_cudnn is False and record.samples_step_s is not None and len(record.samples_step_s) == 2
        stats = results.benchmarks["test_step[dogbreed_dsc]"].stats
        assert stats is not None and sorted(stats.data or ()) == sorted(record.samples_step_s)  # the whole step


def test_bench_ab_refuses_fp16_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = AbSettings(
        sides={"base": str(ROOT), "head": str(ROOT)},
        options=RunOptions(kind="step", cases=("dogbreed_dsc",), device="cpu", precision="fp16"),
        output=tmp_path / "out", workers=1,
    )
    assert ab.run(settings, repo=ROOT) == EXIT_UNUSABLE
    assert "--bench-precision fp16 is not available on the cpu" in capsys.readouterr().err


def test_ab_rounds_carry_the_whole_step_and_tolerate_a_side_without_it() -> None:
    from bench.measure.ab import paired_step

    reply = {"extra_info": {"case": "x", "suite": "s", "kind": "step", "profile": "smoke", "device": "cpu",
                            "batch_size": 2}, "stats": None}
    rounds = [{"forward": 1.0, "backward": 2.0, "optimizer": 0.5, "inference": 0.8, "step": 3.6, "whole": w}
              for w in (3.0, 3.2, 3.1)]
    extra = paired_step(reply, rounds, None, [])
    assert extra["extra_info"]["samples_step_s"] == [3.0, 3.2, 3.1] and extra["extra_info"]["time_step_s"] == 3.1
    assert sorted(extra["stats"]["data"]) == [3.0, 3.1, 3.2]
    assert extra["extra_info"]["throughput_train_ips"] == 2 / 3.5  # from the phases, as the session derives it
    old = paired_step(reply, [{k: v for k, v in r.items() if k != "whole"} for r in rounds], None, [])
    assert old["extra_info"]["samples_step_s"] is None and old["stats"]["data"] == [3.6, 3.6, 3.6]


# -- comparability -------------------------------------------------------------------------------------


def _results(records: list[Record], name: str, **env: Any) -> Any:
    return parse_results(results_json(records, **env), name)


def _with(records: list[Record], **fields: Any) -> list[Record]:
    for record in records:
        record.update(fields)
    return records


NUMERICS = {"tf32_matmul": False, "tf32_cudnn": False, "float32_matmul_precision": "highest"}


def test_fp32_and_bf16_runs_are_not_comparable(tmp_path: Path) -> None:
    base = _with(standard_run(), precision="fp32", **NUMERICS)
    head = _with(standard_run(1), precision="bf16", **NUMERICS)
    c = compare_runs(_results(base, "base.json"), _results(head, "head.json", precision="bf16"))
    assert c.blocked and c.exit_code == 3
    assert "precision: base.json has fp32, head.json has bf16" in c.incomparable
    # through the command line: exit 3 and the message
    from bench import commands as cli

    a = write_json(tmp_path / "a.json", results_json(base))
    b = write_json(tmp_path / "b.json", results_json(head, precision="bf16"))
    assert cli.main(["compare", str(a), str(b)]) == 3


def test_a_tf32_difference_is_not_comparable() -> None:
    base = _with(standard_run(), **NUMERICS)
    head = _with(standard_run(1), **{**NUMERICS, "tf32_cudnn": True})
    c = compare_runs(_results(base, "base.json"), _results(head, "head.json"))
    assert c.exit_code == 3 and c.incomparable == ("tf32_cudnn: base.json has False, head.json has True",)


def test_records_of_one_mode_compare_and_modes_are_checked_per_benchmark() -> None:
    base = _with(standard_run(), memory_format="channels_last", **NUMERICS)
    head = _with(standard_run(1), memory_format="channels_last", **NUMERICS)
    c = compare_runs(_results(base, "base.json", memory_format="channels_last"),
                     _results(head, "head.json", memory_format="channels_last"))
    assert not c.incomparable and c.exit_code == 0
    # a merged file can mix modes: each benchmark's own modes are checked too
    find(head, "dogbreed_cnn").compile = "default"
    from bench.judge.verdicts import CompareSettings

    c = compare_runs(_results(base, "base.json"), _results(head, "head.json"), CompareSettings(allow_incomparable=True))
    cnn = next(b for b in c.benchmarks if b.name == "test_step[dogbreed_cnn]")
    assert any("compile: 'none' vs 'default'" in n for n in cnn.notes)


def test_old_files_without_mode_fields_load_as_the_defaults() -> None:
    doc = results_json(standard_run())
    for bench in doc["benchmarks"]:
        for key in ("precision", "memory_format", "compile", "tf32_matmul", "tf32_cudnn",
                    "float32_matmul_precision", "cudnn_deterministic", "cudnn_benchmark", "time_step_s",
                    "samples_step_s", "first_step_s", "compile_time_s", "compile_recompiles",
                    "mem_step_peak_bytes", "mem_reserved_peak_bytes"):
            del bench["extra_info"][key]
    old = parse_results(doc, "old.json")
    assert (old.env.precision, old.env.memory_format, old.env.compile) == ("fp32", "contiguous", "none")
    record = next(iter(old)).record
    assert (record.precision, record.memory_format, record.compile) == ("fp32", "contiguous", "none")
    assert record.tf32_matmul is None and record.samples_step_s is None
    # an old baseline still compares with a new fp32 run; what it did not record is a note, not a block
    new = _results(_with(standard_run(1), **NUMERICS), "new.json")
    c = compare_runs(old, new)
    assert not c.incomparable
    assert any("old.json does not record tf32_matmul, tf32_cudnn, float32_matmul_precision" in n for n in c.env_notes)
