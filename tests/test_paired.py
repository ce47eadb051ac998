"""The statistics of paired rounds (bench.judge.paired) and the paired verdicts built on them."""

from __future__ import annotations

import math
import random

import pytest

from bench.judge.paired import (
    detectable_shift,
    hodges_lehmann,
    holm,
    paired_test,
    signed_rank_cdf,
    signed_rank_p,
)
from bench.judge.verdicts import evaluate_paired
from bench.record.metrics import METRICS


def test_signed_rank_distribution_matches_the_published_table() -> None:
    # Wilcoxon's table for n = 10: P(T <= 8) = 0.0244, P(T <= 10) = 0.042 (two-sided 5 % critical value 8)
    assert signed_rank_cdf(10, 8) == pytest.approx(25 / 1024)
    assert signed_rank_cdf(10, 10) == pytest.approx(43 / 1024)
    assert signed_rank_cdf(5, 0) == 1 / 32  # the smallest p-value 5 pairs can give
    assert signed_rank_cdf(10, 55) == 1.0
    # symmetric: P(T <= t) = P(T >= n(n+1)/2 - t)
    assert signed_rank_cdf(12, 20) == pytest.approx(1 - signed_rank_cdf(12, 78 - 20 - 1))


def test_identical_samples_give_no_change_and_p_one() -> None:
    base = [0.01, 0.012, 0.011, 0.013, 0.01, 0.011]
    test = paired_test(base, list(base))
    assert test.change == 0
    assert test.p_value == 1.0
    assert test.interval == (0.0, 0.0)


def test_a_known_shift_is_estimated_inside_its_interval_and_significant() -> None:
    rng = random.Random(3)
    speed = [math.exp(rng.gauss(0, 0.3)) for _ in range(30)]  # the machine drifts a lot between rounds ...
    base = [0.02 * s * math.exp(rng.gauss(0, 0.03)) for s in speed]
    head = [0.02 * s * 1.10 * math.exp(rng.gauss(0, 0.03)) for s in speed]  # ... head is 10 % slower
    test = paired_test(base, head)
    lo, hi = test.interval
    assert lo < 0.10 < hi
    assert test.change == pytest.approx(0.10, abs=0.02)
    assert test.p_value < 1e-6
    assert test.slower


def test_signed_rank_p_agrees_with_scipy_and_is_one_sided() -> None:
    d = [0.1, 0.2, -0.05, 0.3, 0.15, 0.12, -0.01, 0.25]
    assert signed_rank_p(d, "greater") < 0.05
    assert signed_rank_p(d, "less") > 0.95
    assert signed_rank_p([0.0, 0.0], "greater") == 1.0


def test_hodges_lehmann_on_a_textbook_example() -> None:
    estimate, lo, hi = hodges_lehmann([float(x) for x in range(1, 11)])
    assert estimate == 5.5
    assert (lo, hi) == (3.5, 7.5)  # the 9th smallest and 9th largest of the 55 Walsh averages


def test_holm_adjusts_step_down_and_keeps_order() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == []


def test_detectable_shift_needs_enough_pairs() -> None:
    assert detectable_shift(5, 0.1, 0.01) is None  # 2**-5 = 0.031 > 0.01: nothing can be detected
    small, large = detectable_shift(20, 0.1, 0.001), detectable_shift(40, 0.1, 0.001)
    assert small is not None and large is not None and large < small
    assert detectable_shift(20, 0.2, 0.001) == pytest.approx(2 * small)


def _deltas(factor: float, n: int = 24, seed: int = 0) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    speed = [math.exp(rng.gauss(0, 0.25)) for _ in range(n)]
    base = [0.01 * s * math.exp(rng.gauss(0, 0.05)) for s in speed]
    head = [0.01 * s * factor * math.exp(rng.gauss(0, 0.05)) for s in speed]
    return base, head


@pytest.mark.parametrize(("factor", "verdict"), [(1.0, "unchanged"), (1.15, "regressed"), (0.85, "improved")])
def test_paired_verdicts(factor: float, verdict: str) -> None:
    metric = METRICS["time_forward_s"]
    base, head = _deltas(factor)
    test = paired_test(base, head)
    d = evaluate_paired(metric, sum(base) / len(base), sum(head) / len(head), test, test.p_value * 8, 8)
    assert d.verdict == verdict
    assert d.p_value == pytest.approx(test.p_value * 8)
    if verdict == "unchanged":
        assert "would have caught ≥" in d.note


def test_a_small_significant_move_is_unchanged_but_said() -> None:
    metric = METRICS["time_forward_s"]
    base, head = _deltas(1.02, n=60)
    test = paired_test(base, head)
    d = evaluate_paired(metric, 1.0, 1.02, test, test.p_value, 1)
    assert d.verdict == "unchanged"
    assert "significant, but within ±5%" in d.note


def test_too_few_pairs_say_so() -> None:
    metric = METRICS["time_forward_s"]
    base, head = _deltas(1.5, n=4)
    test = paired_test(base, head)
    d = evaluate_paired(metric, 1.0, 1.5, test, min(1.0, test.p_value * 4), 4)
    assert d.verdict == "inconclusive"
    unchanged = evaluate_paired(metric, 1.0, 1.0, paired_test(base, base), 1.0, 4)
    assert "4 pairs cannot reach p < 0.05" in unchanged.note


def test_paired_test_refuses_misaligned_samples() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        paired_test([1.0, 0.0], [1.0, 1.0])


def test_worker_pairs_that_disagree_make_a_move_inconclusive() -> None:
    metric = METRICS["time_forward_s"]
    base, head = _deltas(1.0, n=30)
    head = [h * (1.5 if i % 3 == 0 else 1.0) for i, h in enumerate(head)]  # one of three processes is slow
    test = paired_test(base, head, groups=3)
    assert len(test.group_changes) == 3
    assert test.group_changes[0] > 0.3 and all(abs(g) < 0.1 for g in test.group_changes[1:])
    d = evaluate_paired(metric, 1.0, 1.1, test, 1e-6, 1)  # even when the test alone says "significant"
    assert d.verdict == "inconclusive" and "worker pairs disagree" in d.note
    slower = paired_test(base, [h * 1.2 for h in _deltas(1.0, n=30)[1]], groups=3)
    assert evaluate_paired(metric, 1.0, 1.2, slower, 1e-6, 1).verdict == "regressed"


def test_accuracy_is_exact_only_on_the_same_cpu() -> None:
    """Two CPUs that both call themselves "AMD EPYC", one with AVX-512: same seed, different kernels,
    different accuracies (seen between the committed baseline and a run on a newer VM)."""
    from bench.judge.verdicts import reproducible_env
    from bench.record.results import Environment

    def env(family: int, flags: list[str]) -> Environment:
        info = {"archbench": {"device": "cpu", "profile": "smoke", "device_name": "AMD EPYC", "torch": "2",
                              "threads": 2, "deterministic": True},
                "cpu": {"vendor_id_raw": "AuthenticAMD", "family": family, "model": 1, "flags": flags}}
        return Environment.from_machine_info(info, "x.json")

    zen3, zen5 = env(25, ["avx2", "fma"]), env(26, ["avx2", "avx512f", "fma"])
    assert reproducible_env(zen3, env(25, ["fma", "avx2"]))
    assert not reproducible_env(zen3, zen5)
    assert zen3.cpu is not None and "family 25" in zen3.cpu and "2 flags" in zen3.cpu
