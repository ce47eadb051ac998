"""bench compare: per-metric rules, benchmark statuses, exit codes and the rendered outputs."""

from __future__ import annotations

import io
import json
import math
import random
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
from results_factory import (
    failed_record,
    find,
    many_cases,
    results_json,
    scale_samples,
    standard_run,
    step_record,
    train_record,
    write_json,
    write_results,
)
from rich.console import Console

from bench import commands as cli
from bench.commands.compare import OutputOptions, run
from bench.judge.stats import time_noise
from bench.judge.verdicts import CompareSettings, Status, compare_runs, evaluate_metric, parse_threshold
from bench.record.metrics import METRICS, Tolerance
from bench.record.results import load_results
from bench.render import json_report, markdown, terminal


def _run(tmp_path: Path, base: list, head: list, options: CompareSettings | None = None,
         base_env: dict | None = None, head_env: dict | None = None) -> tuple[int, str]:
    """Write both runs, run `bench compare` on them; (exit code, everything printed)."""
    a = write_json(tmp_path / "base.json", results_json(base, **(base_env or {})))
    b = write_json(tmp_path / "head.json", results_json(head, **(head_env or {})))
    out = io.StringIO()
    code = run(a, b, options or CompareSettings(), OutputOptions(), Console(file=out, width=250))
    return code, out.getvalue()


# -- the rules ------------------------------------------------------------------------------------


def test_exact_rule() -> None:
    m = METRICS["params_total"]
    assert evaluate_metric(m, 100, 100).verdict == "unchanged"
    up = evaluate_metric(m, 100, 101)
    assert up.verdict == "regressed" and up.rel == pytest.approx(0.01)
    assert evaluate_metric(m, 100, 99).verdict == "improved"  # reported as a change, does not fail


def test_exact_rule_zero_baseline() -> None:
    d = evaluate_metric(METRICS["macs_forward"], 0, 5)
    assert d.verdict == "regressed" and d.rel is None and d.new_nonzero


def _samples(median: float, n: int = 7, spread: float = 0.01) -> list[float]:
    return [median * (1 + spread * (i - n // 2) / n) for i in range(n)]


def test_time_rule_within_threshold_is_unchanged() -> None:
    m = METRICS["time_forward_s"]
    d = evaluate_metric(m, 0.100, 0.105, _samples(0.100), _samples(0.105))
    assert d.verdict == "unchanged"


def test_time_rule_significant_slowdown_regresses() -> None:
    m = METRICS["time_forward_s"]
    d = evaluate_metric(m, 0.100, 0.125, _samples(0.100), _samples(0.125))
    assert d.verdict == "regressed" and d.p_value is not None and d.p_value < 0.01


def test_time_rule_significant_speedup_improves() -> None:
    m = METRICS["time_forward_s"]
    assert evaluate_metric(m, 0.100, 0.080, _samples(0.100), _samples(0.080)).verdict == "improved"


def test_time_rule_moved_but_not_significant_is_inconclusive() -> None:
    m = METRICS["time_forward_s"]
    base = [0.05, 0.10, 0.20, 0.30, 0.10]
    head = [0.06, 0.12, 0.25, 0.28, 0.09]
    d = evaluate_metric(m, 0.10, 0.12, base, head)
    assert d.verdict == "inconclusive" and d.p_value is not None and d.p_value >= 0.01
    assert "not significant" in d.note


def test_time_rule_without_samples_is_inconclusive() -> None:
    d = evaluate_metric(METRICS["time_forward_s"], 0.10, 0.20, None, None)
    assert d.verdict == "inconclusive" and "no raw samples" in d.note


def test_time_rule_absolute_floor() -> None:
    # +50 % but only 20 µs, under the 100 µs floor: noise, not a regression.
    m = METRICS["time_optimizer_s"]
    d = evaluate_metric(m, 40e-6, 60e-6, _samples(40e-6), _samples(60e-6))
    assert d.verdict == "unchanged"


def test_time_rule_zero_baseline_absolute_rule_decides() -> None:
    m = METRICS["time_optimizer_s"]
    tiny = evaluate_metric(m, 0.0, 50e-6, [0.0] * 5, _samples(50e-6, 5))
    assert tiny.verdict == "unchanged" and tiny.rel is None and tiny.new_nonzero
    big = evaluate_metric(m, 0.0, 0.01, [0.0] * 5, _samples(0.01, 5))
    assert big.verdict == "regressed" and big.new_nonzero


def test_memory_tolerance_needs_both_relative_and_absolute() -> None:
    m = METRICS["mem_backward_bytes"]
    mib = 1 << 20
    assert evaluate_metric(m, 100 * mib, 104 * mib).verdict == "unchanged"  # 4 %: under 5 %
    assert evaluate_metric(m, 4 * mib, 5 * mib // 1 + mib // 2).verdict == "regressed"  # +37 %, 1.5 MiB
    assert evaluate_metric(m, 4 * mib, 4 * mib + mib // 2).verdict == "unchanged"  # +12 % but 0.5 MiB
    assert evaluate_metric(m, 100 * mib, 80 * mib).verdict == "improved"


def test_memory_zero_baseline() -> None:
    m = METRICS["mem_optimizer_bytes"]
    small = evaluate_metric(m, 0, 1000)
    assert small.verdict == "unchanged" and small.new_nonzero  # under the 1 MiB floor
    big = evaluate_metric(m, 0, 8 << 20)
    assert big.verdict == "regressed" and big.rel is None


def test_accuracy_tolerance_in_points() -> None:
    m = METRICS["accuracy_test"]
    assert evaluate_metric(m, 0.80, 0.79).verdict == "unchanged"  # 1 point
    assert evaluate_metric(m, 0.80, 0.77).verdict == "regressed"  # 3 points
    assert evaluate_metric(m, 0.80, 0.85).verdict == "improved"
    exact = replace(m, rule=Tolerance(rel=0.0, abs=0.0))
    assert evaluate_metric(exact, 0.80, 0.7999).verdict == "regressed"


def test_metric_added_or_removed() -> None:
    m = METRICS["mem_inference_bytes"]
    assert evaluate_metric(m, None, 5).verdict == "added"
    assert evaluate_metric(m, 5, None).verdict == "removed"


# -- thresholds -----------------------------------------------------------------------------------


def test_parse_threshold() -> None:
    assert parse_threshold("time_forward_s=0.2") == ("time_forward_s", 0.2)
    assert parse_threshold(" accuracy_test=0.05") == ("accuracy_test", 0.05)


@pytest.mark.parametrize(
    "text, message",
    [
        ("nonsense", "expected METRIC=VALUE"),
        ("time_warp_s=0.1", "unknown metric 'time_warp_s'"),
        ("time_forward_s=fast", "not a number"),
        ("time_forward_s=-1", ">= 0"),
        ("time_forward_s=nan", "finite"),
        ("params_total=0.1", "compared exactly"),
    ],
)
def test_bad_threshold(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_threshold(text)


def test_bad_threshold_on_the_command_line_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_results(tmp_path / "a.json", standard_run())
    with pytest.raises(SystemExit) as info:
        cli.main(["compare", str(a), str(a), "--threshold", "time_warp_s=0.1"])
    assert info.value.code == 2
    assert "unknown metric 'time_warp_s'" in capsys.readouterr().err


# -- the acceptance criteria ------------------------------------------------------------------------


def test_back_to_back_runs_of_the_same_commit_exit_0(tmp_path: Path) -> None:
    code, out = _run(tmp_path, standard_run(noise_seed=0), standard_run(noise_seed=1))
    assert code == 0, out
    assert "no regression" in out


def test_one_case_slower_by_a_quarter_exits_1_naming_case_and_metric(tmp_path: Path) -> None:
    head = standard_run(noise_seed=1)
    scale_samples(find(head, "dogbreed_deformable"), 1.25, ("forward", "backward", "optimizer", "inference"))
    code, out = _run(tmp_path, standard_run(noise_seed=0), head)
    assert code == 1, out
    assert "test_step[dogbreed_deformable]" in out and "time_forward_s" in out
    assert "REGRESSION" in out
    # only that case is flagged
    c = compare_runs(load_results(tmp_path / "base.json"), load_results(tmp_path / "head.json"))
    assert [b.name for b in c.benchmarks if b.status is Status.REGRESSED] == ["test_step[dogbreed_deformable]"]


def test_changed_parameter_count_exits_1(tmp_path: Path) -> None:
    head = standard_run(noise_seed=1)
    find(head, "resnet50_dcn_0001").params_total += 18
    code, out = _run(tmp_path, standard_run(), head)
    assert code == 1 and "params_total" in out and "test_step[resnet50_dcn_0001]" in out


def test_smaller_parameter_count_is_reported_but_passes(tmp_path: Path) -> None:
    head = standard_run(noise_seed=1)
    find(head, "dogbreed_cnn").params_total -= 100
    code, out = _run(tmp_path, standard_run(), head)
    assert code == 0 and "improved" in out and "params_total" in out


def test_threshold_override_relaxes_the_time_rule(tmp_path: Path) -> None:
    head = standard_run(noise_seed=1)
    scale_samples(find(head, "dogbreed_cnn"), 1.25)
    code, out = _run(tmp_path, standard_run(), head, CompareSettings(thresholds={"time_forward_s": 0.5}))
    assert code == 0, out
    assert "thresholds overridden: time_forward_s=0.5" in out


# -- noise between runs (why and how much: bench.record.metrics.TimeRule) ------------------------------------
# `between` makes each case of each run exp(N(0, between)) slower, so two runs differ by about between·√2.
NOISY, QUIET = 0.14, 0.01


def _pair(between: float, n: int = 32) -> tuple[list, list]:
    cases = many_cases(n)
    return (standard_run(noise_seed=0, cases=cases, between=between),
            standard_run(noise_seed=1, cases=cases, between=between))


def test_noise_between_runs_is_estimated_from_the_pair(tmp_path: Path) -> None:
    for between, low, high in ((NOISY, 0.12, 0.30), (QUIET, 0.0, 0.04)):
        base, head = _pair(between)
        a = write_results(tmp_path / "a.json", base)
        b = write_results(tmp_path / "b.json", head)
        noise = time_noise(load_results(a), load_results(b))
        assert noise is not None and noise.n == 32 * 5  # forward, backward, optimizer, inference, epoch
        assert set(noise.sigma) == {"time_forward_s", "time_backward_s", "time_optimizer_s", "time_inference_s",
                                    "time_epoch_s"}
        assert all(low <= s <= high for s in noise.sigma.values()), (between, noise)
    few = write_results(tmp_path / "few.json", standard_run(cases=many_cases(2)))
    assert time_noise(load_results(few), load_results(few)) is None  # 10 medians: too few to tell
    # per metric: an optimizer step that drifts more than the rest gets its own, wider spread
    base, head = _pair(QUIET)
    rng = random.Random(0)
    for record in head:
        if record.kind == "step":
            scale_samples(record, math.exp(rng.gauss(0.0, 0.3)), ("optimizer",))
    noise = time_noise(load_results(write_results(tmp_path / "oa.json", base)),
                       load_results(write_results(tmp_path / "ob.json", head)))
    assert noise is not None and noise.sigma["time_optimizer_s"] > 5 * noise.sigma["time_forward_s"]
    # 3 cases: 3 medians per metric, 15 in all: every metric gets the pooled spread
    three = standard_run(cases=many_cases(3), noise_seed=0, between=NOISY)
    noise = time_noise(load_results(write_results(tmp_path / "3a.json", three)),
                       load_results(write_results(tmp_path / "3b.json", standard_run(
                           cases=many_cases(3), noise_seed=1, between=NOISY))))
    assert noise is not None and noise.n == 15 and len(set(noise.sigma.values())) == 1


def test_noisy_machine_back_to_back_exits_0_and_says_why(tmp_path: Path) -> None:
    base, head = _pair(NOISY)
    code, out = _run(tmp_path, base, head)
    assert code == 0, out
    assert "time noise between these runs: moves within forward ±" in out and "inconclusive" in out
    # the floor is what keeps it green: without it the same pair "regresses"
    code, out = _run(tmp_path, base, head, CompareSettings(noise_z=0))
    assert code == 1, out


def test_move_within_the_noise_floor_is_inconclusive_not_unchanged() -> None:
    m = METRICS["time_forward_s"]
    base, head = [0.010, 0.0101, 0.0099, 0.0100, 0.0102], [0.013, 0.0131, 0.0129, 0.0130, 0.0132]
    assert evaluate_metric(m, 0.010, 0.013, base, head).verdict == "regressed"
    within = evaluate_metric(m, 0.010, 0.013, base, head, noise_floor=0.5)
    assert within.verdict == "inconclusive" and "noise between these runs (±50%)" in within.note
    beyond = evaluate_metric(m, 0.010, 0.016, base, [x * 16 / 13 for x in head], noise_floor=0.5)
    assert beyond.verdict == "regressed"
    # the floor only ever widens the rule: below rel a move is unchanged whatever the noise
    assert evaluate_metric(m, 0.010, 0.0105, base, head, noise_floor=0.5).verdict == "unchanged"


def test_noisy_machine_still_catches_a_large_slowdown(tmp_path: Path) -> None:
    base, head = _pair(NOISY)
    scale_samples(find(head, "case_03"), 8.0, ("forward", "backward", "optimizer", "inference"))
    code, out = _run(tmp_path, base, head)
    assert code == 1 and "test_step[case_03]" in out, out


def test_quiet_machine_quarter_slower_exits_1_naming_case_and_metric(tmp_path: Path) -> None:
    base, head = _pair(QUIET)
    code, out = _run(tmp_path, base, head)
    assert code == 0, out
    scale_samples(find(head, "case_03"), 1.25, ("forward", "backward", "optimizer", "inference"))
    code, out = _run(tmp_path, base, head)
    assert code == 1 and "REGRESSION" in out and "test_step[case_03] (time_forward_s" in out, out


def test_explicit_threshold_is_not_widened_by_the_noise(tmp_path: Path) -> None:
    base, head = _pair(NOISY)
    scale_samples(find(head, "case_03"), 1.6, ("forward",))
    code, out = _run(tmp_path, base, head, CompareSettings(thresholds={"time_forward_s": 0.10}))
    assert code == 1 and "test_step[case_03] (time_forward_s)" in out, out


def test_noise_in_json_and_cli_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, head = _pair(NOISY)
    a = write_results(tmp_path / "a.json", base)
    b = write_results(tmp_path / "b.json", head)
    verdicts = tmp_path / "v.json"
    assert cli.main(["compare", str(a), str(b), "--json", str(verdicts)]) == 0
    noise = json.loads(verdicts.read_text())["time_noise"]
    assert sum(noise["medians"].values()) == 160 and noise["floor"]["time_forward_s"] > 0.5
    assert cli.main(["compare", str(a), str(b), "--noise-z", "0", "--json", str(verdicts)]) == 1
    assert json.loads(verdicts.read_text())["time_noise"]["floor"]["time_forward_s"] == 0


# -- benchmark statuses -----------------------------------------------------------------------------


def _status(tmp_path: Path, base: list, head: list, name: str, **kw) -> tuple[int, str, object]:
    code, out = _run(tmp_path, base, head, **kw)
    c = compare_runs(load_results(tmp_path / "base.json"), load_results(tmp_path / "head.json"),
                     kw.get("options", CompareSettings()))
    return code, out, next(b for b in c.benchmarks if b.name == name)


def test_missing_benchmark(tmp_path: Path) -> None:
    base = standard_run()
    head = [r for r in standard_run(1) if r.case != "dogbreed_dsc"]
    code, out, b = _status(tmp_path, base, head, "test_step[dogbreed_dsc]")
    assert b.status is Status.MISSING and code == 0 and "missing from head" in out


def test_new_benchmark(tmp_path: Path) -> None:
    base = [r for r in standard_run() if r.case != "dogbreed_dsc"]
    code, out, b = _status(tmp_path, base, standard_run(1), "test_train[dogbreed_dsc]")
    assert b.status is Status.NEW and code == 0 and "new in head" in out


def test_newly_failing_case_exits_1(tmp_path: Path) -> None:
    head = [r for r in standard_run(1) if not (r.case == "dogbreed_cnn" and r.kind == "step")]
    head.append(failed_record("dogbreed_cnn", status="oom"))
    code, out, b = _status(tmp_path, standard_run(), head, "test_step[dogbreed_cnn]")
    assert code == 1 and b.status is Status.FAILED and b.newly_failing
    assert "newly failing: oom" in out and "test_step[dogbreed_cnn]" in out


def test_new_case_that_fails_exits_1(tmp_path: Path) -> None:
    head = standard_run(1) + [failed_record("mobilenet_v1_100_224", status="error")]
    code, out, b = _status(tmp_path, standard_run(), head, "test_step[mobilenet_v1_100_224]")
    assert code == 1 and b.status is Status.FAILED and "new in head, and failing" in out


def test_still_failing_is_failed_but_does_not_gate(tmp_path: Path) -> None:
    base = standard_run() + [failed_record("mobilenet_v1_100_224", status="oom")]
    head = standard_run(1) + [failed_record("mobilenet_v1_100_224", status="oom")]
    code, out, b = _status(tmp_path, base, head, "test_step[mobilenet_v1_100_224]")
    assert b.status is Status.FAILED and not b.newly_failing and code == 0
    assert "still failing" in out


def test_fixed_case(tmp_path: Path) -> None:
    base = [r for r in standard_run() if not (r.case == "dogbreed_cnn" and r.kind == "train")]
    base.append(failed_record("dogbreed_cnn", kind="train", status="diverged"))
    code, out, b = _status(tmp_path, base, standard_run(1), "test_train[dogbreed_cnn]")
    assert b.status is Status.FIXED and code == 0 and "fixed" in out


def test_different_batch_size_is_not_comparable(tmp_path: Path) -> None:
    head = standard_run(1)
    find(head, "dogbreed_cnn").batch_size = 4
    code, out, b = _status(tmp_path, standard_run(), head, "test_step[dogbreed_cnn]")
    assert b.status is Status.NOT_COMPARABLE and code == 0
    assert "batch_size: 2 vs 4" in out


def test_inconclusive_time_status(tmp_path: Path) -> None:
    # A 3-epoch train record moved by 30 %: past the threshold, but 3 samples cannot be significant.
    head = standard_run(1)
    scale_samples(find(head, "dogbreed_cnn", "train"), 1.3, ("epoch",))
    code, out, b = _status(tmp_path, standard_run(), head, "test_train[dogbreed_cnn]")
    assert b.status is Status.INCONCLUSIVE and code == 0 and "not significant" in out


def test_each_benchmark_gets_the_status_its_change_calls_for(tmp_path: Path) -> None:
    base = standard_run() + [failed_record("gone", status="error"), failed_record("broken", status="oom"),
                             failed_record("mended", status="error")]
    head = [r for r in standard_run(1) if r.case != "resnet50_dcn_0001"]
    head += [step_record("brand_new"), failed_record("broken", status="oom"), step_record("mended")]
    find(head, "dogbreed_cnn").params_total += 1
    find(head, "dogbreed_dsc").params_total -= 1
    scale_samples(find(head, "dogbreed_deformable", "train"), 1.3, ("epoch",))
    find(head, "resnet50_dcn_0000").batch_size = 4
    _run(tmp_path, base, head)
    c = compare_runs(load_results(tmp_path / "base.json"), load_results(tmp_path / "head.json"))
    expected = {
        "test_step[dogbreed_cnn]": Status.REGRESSED, "test_train[dogbreed_cnn]": Status.UNCHANGED,
        "test_step[dogbreed_dsc]": Status.IMPROVED, "test_train[dogbreed_dsc]": Status.UNCHANGED,
        "test_step[dogbreed_deformable]": Status.UNCHANGED, "test_train[dogbreed_deformable]": Status.INCONCLUSIVE,
        "test_step[resnet50_dcn_0000]": Status.NOT_COMPARABLE, "test_train[resnet50_dcn_0000]": Status.UNCHANGED,
        "test_step[resnet50_dcn_0001]": Status.MISSING, "test_train[resnet50_dcn_0001]": Status.MISSING,
        "test_step[gone]": Status.MISSING, "test_step[brand_new]": Status.NEW,
        "test_step[broken]": Status.FAILED, "test_step[mended]": Status.FIXED,
    }
    assert {b.name: b.status for b in c.benchmarks} == expected
    assert [b.name for b in c.benchmarks if b.gates] == ["test_step[dogbreed_cnn]"]  # still failing: no gate


# -- accuracy: exact when environment and seed match -----------------------------------------------


def _acc_pair(drop: float) -> tuple[list, list]:
    base = [train_record("dogbreed_cnn", accuracy=0.60)]
    head = [train_record("dogbreed_cnn", accuracy=0.60 - drop, noise_seed=1)]
    return base, head


def test_accuracy_exact_when_environment_and_seed_match(tmp_path: Path) -> None:
    code, out = _run(tmp_path, *_acc_pair(0.005))
    assert code == 1 and "accuracy_test" in out and "compared exactly" in out


def test_accuracy_tolerance_when_environment_differs(tmp_path: Path) -> None:
    code, out = _run(tmp_path, *_acc_pair(0.005), head_env={"threads": 4})
    assert code == 0, out
    assert "threads" in out  # the difference is still reported


def test_accuracy_tolerance_when_not_deterministic(tmp_path: Path) -> None:
    env = {"deterministic": False}
    code, _ = _run(tmp_path, *_acc_pair(0.005), base_env=env, head_env=env)
    assert code == 0


def test_accuracy_tolerance_when_seeds_differ(tmp_path: Path) -> None:
    base, head = _acc_pair(0.005)
    head[0].seed = 1
    code, _ = _run(tmp_path, base, head)
    assert code == 0


def test_accuracy_threshold_override_beats_exactness(tmp_path: Path) -> None:
    keys = ("accuracy_test", "accuracy_val", "accuracy_test_deformed")  # the factory moves all three
    code, _ = _run(tmp_path, *_acc_pair(0.005), CompareSettings(thresholds={k: 0.01 for k in keys}))
    assert code == 0
    code, out = _run(tmp_path, *_acc_pair(0.005), CompareSettings(thresholds={"accuracy_test": 0.01}))
    assert code == 1 and "accuracy_val" in out


# -- accuracy under several seeds: judged against the seeds' spread -------------------------------------


def _seeded(record, accuracies: list[float], seeds: list[int]):
    """``record`` trained under ``seeds`` with these test accuracies (the other splits follow)."""
    record.seeds = list(seeds)
    record.per_seed = [{"seed": s, "status": "ok", "accuracy_test": a, "accuracy_val": a,
                        "accuracy_test_deformed": a - 0.05, "accuracy_train": min(1.0, a + 0.1)}
                       for s, a in zip(seeds, accuracies)]
    mean = statistics.fmean(accuracies)
    record.accuracy_test = record.accuracy_val = mean
    record.accuracy_test_deformed = statistics.fmean(a - 0.05 for a in accuracies)
    record.accuracy_train = statistics.fmean(min(1.0, a + 0.1) for a in accuracies)
    record.accuracy_test_spread = statistics.stdev(accuracies)
    return record


def test_seed_spread_rule_in_points() -> None:
    rule = METRICS["accuracy_test"].rule
    assert isinstance(rule, Tolerance) and rule.spread_k == 3.0
    base, head = [0.50, 0.60, 0.70], [0.45, 0.55, 0.65]
    # pooled sd 0.1, SE of the difference 0.1 * sqrt(2/3): the floor is 3 of those
    assert rule.spread_floor(base, head) == pytest.approx(3 * 0.1 * math.sqrt(2 / 3))
    assert rule.spread_floor([0.6], [0.55]) == 0.0  # no spread to pool: the tolerance alone
    assert rule.spread_floor([0.6], head) == pytest.approx(3 * 0.1 * math.sqrt(1 + 1 / 3))
    m = METRICS["accuracy_test"]
    within = evaluate_metric(m, 0.60, 0.55, base, head)
    assert within.verdict == "unchanged" and "seeds' spread" in within.note
    assert evaluate_metric(m, 0.60, 0.55).verdict == "regressed"  # the same drop with one seed a side
    beyond = evaluate_metric(m, 0.60, 0.20, base, [0.1, 0.2, 0.3])
    assert beyond.verdict == "regressed" and "beyond the seeds' spread" in beyond.note


def test_compare_judges_seed_means_against_their_spread(tmp_path: Path) -> None:
    base = [_seeded(train_record("dogbreed_cnn"), [0.50, 0.60, 0.70], [0, 1, 2])]
    head = [_seeded(train_record("dogbreed_cnn", noise_seed=1), [0.45, 0.55, 0.65], [3, 4, 5])]
    code, out = _run(tmp_path, base, head)
    assert code == 0, out
    head = [_seeded(train_record("dogbreed_cnn", noise_seed=1), [0.10, 0.20, 0.30], [3, 4, 5])]
    code, out = _run(tmp_path, base, head)
    assert code == 1 and "accuracy_test" in out


def test_same_seeds_in_the_same_environment_are_compared_exactly(tmp_path: Path) -> None:
    base = [_seeded(train_record("dogbreed_cnn"), [0.50, 0.60, 0.70], [0, 1, 2])]
    head = [_seeded(train_record("dogbreed_cnn", noise_seed=1), [0.50, 0.60, 0.69], [0, 1, 2])]
    code, out = _run(tmp_path, base, head)
    assert code == 1 and "compared exactly" in out
    head[0].seeds, head[0].per_seed = [0, 1, 7], [dict(s, seed=n) for s, n in zip(head[0].per_seed, (0, 1, 7))]
    code, out = _run(tmp_path, base, head)
    assert code == 0, out  # other seeds: the spread rule, and 0.3 points is well within it


# -- runs not comparable ----------------------------------------------------------------------------


def test_different_devices_exit_3(tmp_path: Path) -> None:
    head = standard_run(1, device="cuda")
    code, out = _run(tmp_path, standard_run(), head, head_env={"device": "cuda", "device_name": "NVIDIA A10"})
    assert code == 3
    assert "not comparable" in out and "device" in out and "base.json" in out and "head.json" in out
    assert "--allow-incomparable" in out


def test_different_profiles_exit_3(tmp_path: Path) -> None:
    code, out = _run(tmp_path, standard_run(), standard_run(1, profile="full"), head_env={"profile": "full"})
    assert code == 3 and "profile" in out


def test_allow_incomparable_compares_with_a_loud_warning(tmp_path: Path) -> None:
    head = standard_run(1, device="cuda")
    code, out = _run(tmp_path, standard_run(), head, CompareSettings(allow_incomparable=True),
                     head_env={"device": "cuda"})
    assert code == 0, out
    assert "RUNS ARE NOT COMPARABLE" in out


def test_allow_incomparable_still_exits_1_on_regression(tmp_path: Path) -> None:
    head = standard_run(1, device="cuda")
    find(head, "dogbreed_cnn").params_total += 1
    code, _ = _run(tmp_path, standard_run(), head, CompareSettings(allow_incomparable=True),
                   head_env={"device": "cuda"})
    assert code == 1


# -- unusable input, through the command line ---------------------------------------------------------


def _cli(*argv: str) -> int:
    return cli.main(["compare", *argv])


def test_cli_unusable_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_results(tmp_path / "good.json", standard_run())
    empty = tmp_path / "empty.json"
    empty.write_text("")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text()[:500])
    foreign = write_json(tmp_path / "foreign.json", {"name": "not a benchmark"})
    nan = results_json(standard_run())
    nan["benchmarks"][3]["extra_info"]["accuracy_val"] = float("nan")
    nan_path = write_json(tmp_path / "nan.json", nan)
    for bad, reason in [(empty, "empty"), (truncated, "truncated"), (foreign, "not a pytest-benchmark file"),
                        (nan_path, "extra_info.accuracy_val")]:
        assert _cli(str(good), str(bad)) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and reason in err, err
    assert _cli(str(empty), str(good)) == 2
    assert "empty" in capsys.readouterr().err


def test_cli_nan_message_names_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_results(tmp_path / "good.json", standard_run())
    data = results_json(standard_run())
    data["benchmarks"][2]["extra_info"]["samples_forward_s"][0] = float("nan")
    bad = write_json(tmp_path / "bad.json", data)
    assert _cli(str(good), str(bad)) == 2
    err = capsys.readouterr().err
    assert "test_step[dogbreed_dsc]" in err and "samples_forward_s[0]" in err


def test_cli_exit_codes_end_to_end(tmp_path: Path) -> None:
    base = write_results(tmp_path / "base.json", standard_run())
    same = write_results(tmp_path / "same.json", standard_run(1))
    head = standard_run(1)
    find(head, "dogbreed_cnn").params_total += 1
    worse = write_results(tmp_path / "worse.json", head)
    gpu = write_results(tmp_path / "gpu.json", standard_run(1, device="cuda"), device="cuda")
    assert _cli(str(base), str(same)) == 0
    assert _cli(str(base), str(worse)) == 1
    assert _cli(str(base), str(gpu)) == 3
    assert _cli(str(base), str(gpu), "--allow-incomparable") == 0


def test_a_crash_of_the_tool_exits_70_not_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.commands.compare

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug in the comparator")

    monkeypatch.setattr(bench.commands.compare, "compare_runs", boom)
    a = write_results(tmp_path / "a.json", standard_run())
    assert _cli(str(a), str(a)) == 70


# -- outputs ----------------------------------------------------------------------------------------


@pytest.fixture
def regressed(tmp_path: Path) -> tuple[Path, Path]:
    head = standard_run(1)
    scale_samples(find(head, "dogbreed_cnn"), 1.25)
    find(head, "dogbreed_dsc").params_total += 10
    return (write_results(tmp_path / "base.json", standard_run()), write_results(tmp_path / "head.json", head))


def test_outputs_written(tmp_path: Path, regressed: tuple[Path, Path]) -> None:
    md, js, page = tmp_path / "out" / "summary.md", tmp_path / "out" / "c.json", tmp_path / "out" / "c.html"
    code = run(*regressed, CompareSettings(), OutputOptions(markdown=md, json=js, html=page), Console(file=io.StringIO()))
    assert code == 1
    text = md.read_text()
    assert text.startswith("## archbench: ❌ REGRESSION (exit 1)")
    assert "| `test_step[dogbreed_cnn]` | regressed |" in text and "---:" in text
    data = json.loads(js.read_text())
    assert data["exit_code"] == 1 and data["counts"]["regressed"] == 2
    step = next(b for b in data["benchmarks"] if b["name"] == "test_step[dogbreed_cnn]")
    fwd = next(m for m in step["metrics"] if m["key"] == "time_forward_s")
    assert fwd["verdict"] == "regressed" and fwd["unit"] == "ms" and fwd["p_value"] < 0.01
    html = page.read_text()
    assert html.count("plotly.js v") == 1 and "test_step[dogbreed_cnn]" in html


def test_terminal_table_units_and_alignment(regressed: tuple[Path, Path]) -> None:
    c = compare_runs(load_results(regressed[0]), load_results(regressed[1]))
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(terminal.comparison(c))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "test_step[dogbreed_cnn]" in out  # brackets survive (no markup interpretation)
    assert "base (ms)" in out and "head (ms)" in out and "base (M)" in out
    assert "forward [time_forward_s]" in out
    header = next(line for line in out.splitlines() if "base (ms)" in line)
    row = next(line for line in out.splitlines()[out.splitlines().index(header):] if "test_step[dogbreed_cnn]" in line)
    base_cell = row.split("│")[2]
    assert base_cell.startswith("  ") and base_cell.endswith(" ") and not base_cell.endswith("  "), "right-aligned"


def test_markdown_for_blocked_comparison(tmp_path: Path) -> None:
    a = write_results(tmp_path / "a.json", standard_run())
    b = write_results(tmp_path / "b.json", standard_run(1, device="cuda"), device="cuda")
    c = compare_runs(load_results(a), load_results(b))
    assert c.blocked and c.exit_code == 3 and c.benchmarks == ()
    md = markdown.comparison(c)
    assert "NOT COMPARABLE" in md and "--allow-incomparable" in md
    assert json_report.comparison(c)["exit_code"] == 3


def test_zero_baseline_end_to_end(tmp_path: Path) -> None:
    base = standard_run()
    head = standard_run(1)
    find(base, "dogbreed_cnn").mem_optimizer_bytes = 0
    find(head, "dogbreed_cnn").mem_optimizer_bytes = 64 << 20
    code, out = _run(tmp_path, base, head)
    assert code == 1 and "new nonzero" in out and "mem_optimizer_bytes" in out


def test_a_throttled_case_is_named_in_a_warning(tmp_path: Path) -> None:
    head = standard_run(noise_seed=1)
    hot = find(head, "dogbreed_deformable")
    hot.throttled, hot.throttle_reasons = True, ["hw_thermal_slowdown", "sw_power_cap"]
    calm = find(head, "dogbreed_cnn")
    calm.throttled, calm.throttle_reasons = False, []
    code, out = _run(tmp_path, standard_run(noise_seed=0), head)
    assert code == 0, out
    assert ("GPU throttled during test_step[dogbreed_deformable] (head: hw_thermal_slowdown, sw_power_cap)"
            in " ".join(out.split()))
    assert "dogbreed_cnn (head" not in out
    code, out = _run(tmp_path, standard_run(noise_seed=0), standard_run(noise_seed=1))
    assert "GPU throttled" not in out


def test_reported_metrics_are_shown_never_judged(tmp_path: Path) -> None:
    """Achieved TFLOP/s and MFU are FLOPs over a time median: the time metric carries the rule, so halving
    them alone must not gate (it would judge one change twice, without a significance test)."""
    base, head = standard_run(noise_seed=0), standard_run(noise_seed=1)
    for records, tflops in ((base, 2.0), (head, 1.0)):
        for r in records:
            if r.kind == "step":
                r.tflops_forward, r.mfu_forward = tflops, tflops / 100
    code, out = _run(tmp_path, base, head)
    assert code == 0, out
    assert "tflops_forward" not in out
    c = compare_runs(load_results(tmp_path / "base.json"), load_results(tmp_path / "head.json"))
    deltas = [d for b in c.benchmarks for d in b.metrics if d.key == "tflops_forward"]
    assert deltas and all(d.verdict == "reported" and d.rel == pytest.approx(-0.5) for d in deltas)
    with pytest.raises(ValueError, match="reported, not judged"):
        METRICS["mfu_step"].with_threshold(0.1)


@pytest.mark.parametrize("z", ["nan", "-5", "inf", "x"])
def test_noise_z_must_be_a_finite_number_at_least_zero(tmp_path: Path, z: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    a = write_results(tmp_path / "a.json", standard_run())
    with pytest.raises(SystemExit) as info:
        cli.main(["compare", str(a), str(a), "--noise-z", z])
    assert info.value.code == 2 and "--noise-z" in capsys.readouterr().err
