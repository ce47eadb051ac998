"""The run's options: one table, one typed object, every bad value refused before any case is built.

Tried as a new user would: each bad option below once ended in a source dump, a misleading message about
something else, or a failure after the first cases had run."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.record.options import OPTIONS, FailSpec, OptionError, RunOptions, parse_fail

ROOT = Path(__file__).resolve().parents[1]


def test_every_field_has_exactly_one_option_and_every_option_one_field() -> None:
    fields = [f.name for f in dataclasses.fields(RunOptions)]
    assert sorted(o.field for o in OPTIONS.values()) == sorted(fields)


def test_defaults_are_the_tables() -> None:
    assert RunOptions.from_values({}) == RunOptions()
    assert RunOptions().modules_depth == 2 and RunOptions().kind == "both" and RunOptions().seed_list == [0]


def test_the_wire_carries_every_option_back_unchanged() -> None:
    options = RunOptions(
        cases=("dogbreed_*",), suites=("dogbreed",), profile="full", device="cuda:1", batch_size=4, rounds=7,
        warmup=0, warmup_time=0.5, precision="bf16", memory_format="channels_last", compile="default", threads=2,
        malloc="system", epochs=3, seed=5, seeds=(1, 4), kind="train", weights="pretrained", allow_download=True,
        data="cifar10", data_root="/data", modules=True, modules_depth=1, modules_rounds=3, partial="p.jsonl",
        fail=(FailSpec("a", "oom"), FailSpec("b", "crash")),
    )
    assert RunOptions.from_wire(options.to_wire()) == options
    assert RunOptions.from_wire(RunOptions(seeds=3).to_wire()).seed_list == [0, 1, 2]


def test_a_controller_of_an_older_archbench_is_understood() -> None:
    """What bench ab 0.3 sends: typed values, failures as ``inject``."""
    old = {"bench_kind": "step", "bench_rounds": 6, "bench_case": ["dogbreed_cnn"], "bench_threads": 1,
           "inject": {"dogbreed_cnn": "oom"}}
    options = RunOptions.from_wire(old)
    assert (options.kind, options.rounds, options.cases, options.threads) == ("step", 6, ("dogbreed_cnn",), 1)
    assert options.fail == (FailSpec("dogbreed_cnn", "oom"),)
    with pytest.raises(OptionError, match=r"--bench-rounds '-1': expected a whole number >= 1"):
        RunOptions.from_wire({"bench_rounds": -1})


def test_failure_specs() -> None:
    assert parse_fail("head/x:crash") == FailSpec("x", "crash", "head")
    assert parse_fail("x") == FailSpec("x", "error")
    for bad, why in (("left/x", "side must be base or head"), ("x:explode", "kind must be one of"), (":oom", "no case")):
        with pytest.raises(Exception, match=why):
            parse_fail(bad)


def run_bench(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q",
           f"--benchmark-json={tmp / 'out.json'}", "--bench-case=dogbreed_dsc", "--bench-rounds=1",
           "--bench-epochs=1", "--bench-threads=1", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})


#: (arguments, what the error must say): each must stop pytest bench/ with its usage error before a case.
BAD = [
    (["--bench-device=tpu"], "--bench-device: 'tpu': expected cpu, cuda or cuda:N"),
    (["--bench-device=cuda:abc"], "--bench-device: 'cuda:abc': expected cpu, cuda or cuda:N"),
    (["--bench-device=cuda"], "--bench-device 'cuda': 'cuda' asked for, but torch"),
    (["--bench-batch-size=0"], "--bench-batch-size: '0': expected a whole number >= 1"),
    (["--bench-rounds=-1"], "--bench-rounds: '-1': expected a whole number >= 1"),
    (["--bench-warmup-time=nan"], "--bench-warmup-time: 'nan': expected a number of seconds >= 0"),
    (["--bench-modules-depth=0"], "--bench-modules-depth: '0': expected a whole number >= 1"),
    (["--bench-suite=nope"], "--bench-suite unknown suite(s) ['nope']"),
    (["--bench-data=cifar10", "--data-root=EMPTY"], "--data-root dataset 'cifar10' not found; missing:"),
    (["--bench-data=imagenet"], "--bench-data 'imagenet': unknown dataset 'imagenet'"),
    (["--bench-weights=NOFILE"], "--bench-weights"),
    (["--bench-fail=head/dogbreed_dsc"], "--bench-fail 'head/dogbreed_dsc:error': a side (base/, head/) is for bench ab only"),
    (["--bench-precision=fp16"], "--bench-precision fp16 is not available on the cpu"),
]


@pytest.mark.parametrize("args, says", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_option_is_a_usage_error_before_any_case(tmp_path: Path, args: list[str], says: str) -> None:
    args = [a.replace("EMPTY", str(tmp_path)).replace("NOFILE", str(tmp_path / "no.pt")) for a in args]
    proc = run_bench(tmp_path, *args)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output[-3000:]  # pytest's usage error
    assert says in output, output[-3000:]
    assert "Traceback" not in output and "def " not in output  # a sentence, not a source dump
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "out.json.partial.jsonl").exists()


def test_bench_ab_takes_every_option_of_pytest_bench(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.commands import build_parser

    args = build_parser().parse_args(["ab", "HEAD", "HEAD", "--bench-seeds", "2", "--bench-weights", "pretrained",
                                      "--bench-fail", "head/x:hang", "--bench-modules"])
    options = RunOptions.from_values({dest: getattr(args, dest, None) for dest in OPTIONS})
    assert options.seeds == 2 and options.weights == "pretrained" and options.modules
    assert options.fail == (FailSpec("x", "hang", "head"),)
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["ab", "HEAD", "HEAD", "--bench-rounds", "-1"])
    assert exit_.value.code == 2
    assert "argument --bench-rounds: '-1': expected a whole number >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # bench ab writes one partial file per side itself
        build_parser().parse_args(["ab", "HEAD", "HEAD", "--bench-partial", "x.jsonl"])


def test_bench_ab_refuses_a_device_this_machine_lacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Checked in each side's worker, where the side's torch runs, before any case: exit 2."""
    from bench.commands import main

    code = main(["ab", str(ROOT), str(ROOT), "--bench-device", "cuda:3", "--bench-case", "dogbreed_dsc",
                 "--workers", "1", "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "setup failed" in err and "--bench-device 'cuda:3'" in err


def test_a_side_of_bench_ab_may_select_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A case (or suite) only the other side has is that case's "new"/"missing", not a refused side; only
    when neither side has anything is the run refused."""
    from bench.commands import main
    from bench.measure.session import Session

    assert Session.open(RunOptions(cases=("only_in_head",), kind="step"), one_side=True).cases() == []
    assert Session.open(RunOptions(suites=("only_in_head",), kind="step"), one_side=True).cases() == []
    with pytest.raises(OptionError, match="no case matches"):
        Session.open(RunOptions(cases=("only_in_head",), kind="step"))
    code = main(["ab", str(ROOT), str(ROOT), "--bench-case", "only_in_head", "--workers", "1",
                 "-o", str(tmp_path / "out")])
    assert code == 2 and "no case matches the selection on either side" in capsys.readouterr().err
