"""`pytest bench/` end to end, in a subprocess, on two small cases: records, provenance, faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.record.schema import PHASES, Record

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["mobilenet_v1_025_224", "dogbreed_dsc"]
STEP_KEYS = (
    "case", "suite", "profile", "device", "status", "batch_size", "input_size", "params_total",
    "params_trainable", "macs_forward", "time_forward_s", "time_backward_s", "time_optimizer_s",
    "time_inference_s", "mem_forward_bytes", "mem_backward_bytes", "mem_optimizer_bytes", "mem_inference_bytes",
    "throughput_train_ips", "throughput_inference_ips", "time_step_s", "first_step_s", "mem_step_peak_bytes",
    "precision", "memory_format", "compile", "tf32_matmul", "tf32_cudnn", "float32_matmul_precision",
    "cudnn_deterministic", "cudnn_benchmark",
)


def run_bench(tmp_path: Path, *args: str, cases: list[str] = SMALL) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "out.json"
    cmd = [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q", f"--benchmark-json={out}",
           "--bench-profile", "smoke", "--bench-rounds", "2", "--bench-epochs", "1", "--bench-threads", "1",
           *(f"--bench-case={c}" for c in cases), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    data = json.loads(out.read_text()) if out.exists() else {}
    return proc, data


def by_name(data: dict) -> dict[str, dict]:
    """Every benchmark of the file, the failed cases' (under ``archbench_failed``) too."""
    return {b["name"]: b for b in data["benchmarks"] + data.get("archbench_failed", [])}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    tmp = tmp_path_factory.mktemp("clean")
    proc, data = run_bench(tmp)
    return proc, data, tmp


def test_every_case_measured_with_every_key(clean_run) -> None:
    proc, data, _ = clean_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    benches = by_name(data)
    assert set(benches) == {f"test_{k}[{c}]" for k in ("step", "train") for c in SMALL}
    for case in SMALL:
        step = benches[f"test_step[{case}]"]["extra_info"]
        for key in STEP_KEYS:
            assert step[key] is not None, (case, key)
        assert step["status"] == "ok" and step["profile"] == "smoke" and step["device"] == "cpu"
        for phase in (*PHASES, "step"):
            assert len(step[f"samples_{phase}_s"]) == 2
        assert (step["precision"], step["memory_format"], step["compile"]) == ("fp32", "contiguous", "none")
        assert step["compile_time_s"] is None  # eager: no compile metrics
        Record.from_extra_info(step)  # medians agree with samples, types parse
        stats = benches[f"test_step[{case}]"]["stats"]
        assert stats["rounds"] == 2 and len(stats["data"]) == 2
        train = benches[f"test_train[{case}]"]["extra_info"]
        for key in ("accuracy_train", "accuracy_val", "accuracy_test", "accuracy_test_deformed", "loss_test",
                    "curve", "seed", "train_steps", "dataset", "num_classes"):
            assert train[key] is not None, (case, key)
        assert train["dataset"] == "embedded" and len(train["curve"]) == 1
        assert train["precision"] == "fp32" and train["cudnn_deterministic"] is True  # read while training
        assert benches[f"test_train[{case}]"]["stats"]["rounds"] == 1  # seconds per epoch, one epoch


def test_machine_info_provenance(clean_run) -> None:
    _, data, _ = clean_run
    info = data["machine_info"]["archbench"]
    for key in ("torch", "torchvision", "cuda", "cudnn", "threads", "device", "device_name", "gpu", "profile",
                "deterministic", "suite_version", "profile_settings", "seed"):
        assert key in info, key
    assert info["threads"] == 1 and info["profile"] == "smoke" and info["device"] == "cpu"
    assert info["profile_settings"]["rounds"] == 2  # the override is what is recorded
    assert info["profile_settings"]["warmup_min_s"] == 0.0
    assert (info["precision"], info["memory_format"], info["compile"]) == ("fp32", "contiguous", "none")
    assert "commit_info" in data


def test_the_run_ends_with_one_row_per_case(clean_run) -> None:
    proc, _, tmp = clean_run
    summary = proc.stdout[proc.stdout.index("archbench summary"):]
    rows = [line for line in summary.splitlines()
            if line.startswith("│ ") and ("dogbreed_dsc" in line or "mobilenet_v1_025_224" in line)]
    assert len(rows) == 2  # the step and the train record of a case share a row
    assert "test acc" in summary and "fwd" in summary and f"results: {tmp / 'out.json'}" in summary


def test_partial_file_written_as_it_goes(clean_run) -> None:
    _, data, tmp = clean_run
    lines = (tmp / "out.json.partial.jsonl").read_text().splitlines()
    assert len(lines) == len(data["benchmarks"])
    assert {json.loads(line)["name"] for line in lines} == {b["name"] for b in data["benchmarks"]}


def test_injected_failure_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    proc, data = run_bench(tmp_path, "--bench-fail=dogbreed_dsc", "--bench-fail=mobilenet_v1_025_224:oom",
                           "--bench-kind=step", cases=[*SMALL, "mobilenet_v1_050_224"])
    assert proc.returncode == 1  # the failing cases fail the pytest run...
    benches = by_name(data)      # ...but every case is in the JSON
    assert set(benches) == {"test_step[mobilenet_v1_025_224]", "test_step[dogbreed_dsc]",
                            "test_step[mobilenet_v1_050_224]"}
    failed = benches["test_step[dogbreed_dsc]"]["extra_info"]
    assert failed["status"] == "error" and "injected failure" in failed["error"]
    assert failed["params_total"] == 74_663  # what was measured before the failure is kept
    assert benches["test_step[mobilenet_v1_025_224]"]["extra_info"]["status"] == "oom"
    assert benches["test_step[mobilenet_v1_050_224]"]["extra_info"]["status"] == "ok"
    assert "dogbreed_dsc (step): status error" in proc.stdout
    # the run ends with archbench's summary, one row per case with its failure flagged, and the report
    summary = proc.stdout[proc.stdout.index("archbench summary"):]
    assert "step: error" in summary and "step: oom" in summary and "3 cases, 2 with a failed record" in summary
    assert f"report: {tmp_path / 'out.html'}" in summary and (tmp_path / "out.html").stat().st_size > 0


def test_interrupted_run_keeps_what_it_measured(tmp_path: Path) -> None:
    from bench.measure.cases import select

    cases = ["dogbreed_cnn", "dogbreed_dsc", "mobilenet_v1_050_224"]
    order = [c.name for c in select(cases, [])]
    stop = order.index("dogbreed_dsc")
    assert stop > 0, "the interrupted case must not be the first one run"
    proc, data = run_bench(tmp_path, "--bench-fail=dogbreed_dsc:interrupt", "--bench-kind=step", cases=cases)
    assert proc.returncode == 2  # pytest's "interrupted"
    statuses = {name: b["extra_info"]["status"] for name, b in by_name(data).items()}
    expected = {f"test_step[{name}]": "ok" for name in order[:stop]} | {"test_step[dogbreed_dsc]": "interrupted"}
    assert statuses == expected
    partial = (tmp_path / "out.json.partial.jsonl").read_text().splitlines()
    assert len(partial) == stop + 1


def test_unknown_case_is_a_usage_error(tmp_path: Path) -> None:
    proc, _ = run_bench(tmp_path, cases=["no_such_case_*"])
    assert proc.returncode == 4  # pytest's usage error
    assert "no case matches" in proc.stderr


def test_several_seeds_train_each_case_under_each(tmp_path: Path) -> None:
    proc, data = run_bench(tmp_path, "--bench-seeds=0,4", "--bench-kind=train", cases=["dogbreed_dsc"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bench = by_name(data)["test_train[dogbreed_dsc]"]
    info = bench["extra_info"]
    assert info["seeds"] == [0, 4] and [s["seed"] for s in info["per_seed"]] == [0, 4]
    accuracies = [s["accuracy_test"] for s in info["per_seed"]]
    assert info["accuracy_test"] == pytest.approx(sum(accuracies) / 2)
    assert bench["stats"]["rounds"] == 2 and len(info["samples_epoch_s"]) == 2  # one epoch per seed
    assert Record.from_extra_info(info).accuracy_test_spread is not None
    assert "±" in proc.stdout[proc.stdout.index("archbench summary"):]


@pytest.mark.parametrize("value", ["0", "1,1", "x"])
def test_bad_seeds_are_a_usage_error(tmp_path: Path, value: str) -> None:
    proc, _ = run_bench(tmp_path, f"--bench-seeds={value}", "--bench-kind=train", cases=["dogbreed_dsc"])
    assert proc.returncode == 4 and "--bench-seeds" in proc.stderr


def test_a_run_whose_every_case_fails_leaves_a_results_file_of_its_own(tmp_path: Path) -> None:
    """pytest-benchmark writes no JSON when no benchmark finished: an older file at the path would survive
    and be reported (and drawn) as this run's results."""
    stale = {"machine_info": {"archbench": {"device": "cpu", "profile": "smoke"}}, "benchmarks": [
        {"name": "test_step[old_case]", "extra_info": {"case": "old_case"}, "stats": None}]}
    (tmp_path / "out.json").write_text(json.dumps(stale))
    proc, data = run_bench(tmp_path, "--bench-fail=dogbreed_dsc", "--bench-kind=step", cases=["dogbreed_dsc"])
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert data["benchmarks"] == []
    (failed,) = data["archbench_failed"]
    assert failed["name"] == "test_step[dogbreed_dsc]" and failed["extra_info"]["status"] == "error"
    assert "old_case" not in json.dumps(data)
    summary = proc.stdout[proc.stdout.index("archbench summary"):]
    assert f"results: {tmp_path / 'out.json'}" in summary
