"""Statistics of paired rounds: base and head timed in alternation, round ``i`` of one beside round ``i``
of the other (``bench ab``).

Each pair gives one log ratio ``d_i = log(head_i / base_i)``. Both sides of a pair ran within the same
second, so the machine's speed in that second cancels out of ``d_i``; what is left is the code's
difference plus the noise of a single round. The estimate of the change is the Hodges–Lehmann estimator
of the median of ``d`` (the median of the Walsh averages ``(d_i + d_j) / 2``, i ≤ j), with the
distribution-free confidence interval that inverts Wilcoxon's signed-rank test; significance is the
one-sided signed-rank test in the direction the estimate moved. Many time metrics are judged in one run,
so p-values are corrected with Holm's step-down method, which keeps the chance of any false alarm in
the run below ``alpha`` whatever the dependence between the tests.

All functions are pure and take plain sequences of floats.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Alternative = Literal["greater", "less"]

#: Exact signed-rank distribution up to this many pairs (the counts stay small); normal beyond.
_EXACT_MAX_N = 60
#: Asymptotic relative efficiency of the signed-rank test against the t-test for normal data (3/π):
#: the signed-rank test needs 1/0.955 times as many pairs to detect the same shift.
_ARE_SIGNED_RANK = 3 / math.pi


@functools.cache
def _signed_rank_counts(n: int) -> tuple[int, ...]:
    """``counts[t]``: how many of the 2**n sign assignments of ranks 1..n give a positive-rank sum t."""
    counts = [1]
    for rank in range(1, n + 1):
        longer = counts + [0] * rank
        for t in range(len(counts)):
            longer[t + rank] += counts[t]
        counts = longer
    return tuple(counts)


def signed_rank_cdf(n: int, t: int) -> float:
    """P(T+ ≤ t) for ``n`` pairs without ties, under the null hypothesis of a symmetric zero shift."""
    if t < 0:
        return 0.0
    top = n * (n + 1) // 2
    if t >= top:
        return 1.0
    if n <= _EXACT_MAX_N:
        counts = _signed_rank_counts(n)
        return sum(counts[: t + 1]) / 2**n
    mean, sd = top / 2, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    return NormalDist(mean, sd).cdf(t + 0.5)


def signed_rank_p(d: Sequence[float], alternative: Alternative) -> float:
    """One-sided Wilcoxon signed-rank p-value that the differences ``d`` are shifted above zero
    (``greater``) or below it (``less``): scipy's test, zeros dropped (Wilcoxon's convention)."""
    from scipy.stats import wilcoxon  # type: ignore[import-untyped]

    if not any(x != 0 for x in d):
        return 1.0
    p = float(wilcoxon(list(d), zero_method="wilcox", alternative=alternative).pvalue)
    return p if math.isfinite(p) else 1.0


def hodges_lehmann(d: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(estimate, lower, upper): the Hodges–Lehmann shift of ``d`` and its two-sided distribution-free
    interval at ``confidence`` (the Walsh averages between the signed-rank test's critical values).
    With too few pairs for the interval to exist, the bounds are the smallest and largest Walsh
    averages (an interval of lower confidence, never a narrower one)."""
    n = len(d)
    if n == 0:
        raise ValueError("no pairs")
    walsh = sorted((d[i] + d[j]) / 2 for i in range(n) for j in range(i, n))
    estimate = statistics.median(walsh)
    tail = (1 - confidence) / 2
    # c: the largest count of Walsh averages that may be cut from each end, P(T+ ≤ c - 1) ≤ tail
    c = 0
    while c + 1 <= len(walsh) // 2 and signed_rank_cdf(n, c) <= tail:
        c += 1
    return estimate, walsh[c], walsh[len(walsh) - 1 - c]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order: reject where adjusted p < alpha keeps
    the family-wise error rate at alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=pvalues.__getitem__)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def robust_sigma(d: Sequence[float]) -> float:
    """1.4826 × the median absolute deviation: σ for normal data, unmoved by a few wild rounds."""
    center = statistics.median(d)
    return 1.4826 * statistics.median(abs(x - center) for x in d)


def detectable_shift(n: int, sigma: float, alpha: float, power: float = 0.8) -> float | None:
    """The smallest shift of log ratios that a one-sided signed-rank test at level ``alpha`` on ``n``
    pairs with spread ``sigma`` detects with probability ``power`` (normal approximation with the
    test's efficiency 3/π); ``None`` when no shift at all can reach ``alpha`` with ``n`` pairs (the
    smallest exact p-value is 2**-n)."""
    if n < 1 or 0.5**n >= alpha:
        return None
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(power)
    return z * sigma / math.sqrt(n * _ARE_SIGNED_RANK)


@dataclass(frozen=True)
class PairedTest:
    """One metric of one benchmark judged on its paired rounds; ratios are head/base."""

    n: int
    #: Hodges–Lehmann estimate of the median log ratio, and its interval.
    log_estimate: float
    log_lower: float
    log_upper: float
    sigma: float
    #: One-sided signed-rank p-value in the direction the estimate moved (before correction).
    p_value: float
    #: Rounds measured by several worker processes per side (round r by worker r mod k): each
    #: worker pair's own Hodges–Lehmann change, so that a quirk of one process can be told apart
    #: from a change of the code. Empty with one worker per side.
    group_changes: tuple[float, ...] = ()

    @property
    def change(self) -> float:
        """Estimated relative change, head over base minus one."""
        return math.expm1(self.log_estimate)

    @property
    def interval(self) -> tuple[float, float]:
        return math.expm1(self.log_lower), math.expm1(self.log_upper)

    @property
    def slower(self) -> bool:
        return self.log_estimate > 0

    def detectable(self, alpha: float, power: float = 0.8) -> float | None:
        """The smallest relative slowdown this many pairs with this spread would have caught."""
        shift = detectable_shift(self.n, self.sigma, alpha, power)
        return None if shift is None else math.expm1(shift)


def paired_test(base: Sequence[float], head: Sequence[float], confidence: float = 0.95,
                groups: int = 1) -> PairedTest:
    """Judge aligned samples (``base[i]`` and ``head[i]`` measured in the same turn); ``groups``: the
    rounds came from that many worker pairs in turn (round i from pair i mod groups)."""
    if len(base) != len(head):
        raise ValueError(f"paired samples differ in length: {len(base)} base, {len(head)} head")
    if not base:
        raise ValueError("no paired samples")
    if any(x <= 0 for x in (*base, *head)):
        raise ValueError("paired samples must be positive times")
    d = [math.log(h / b) for b, h in zip(base, head)]
    estimate, lower, upper = hodges_lehmann(d, confidence)
    alternative: Alternative = "greater" if estimate > 0 else "less"
    group_changes = tuple(
        math.expm1(hodges_lehmann(d[g::groups], confidence)[0]) for g in range(groups) if d[g::groups]
    ) if groups > 1 else ()
    return PairedTest(
        n=len(d), log_estimate=estimate, log_lower=lower, log_upper=upper,
        sigma=robust_sigma(d), p_value=signed_rank_p(d, alternative), group_changes=group_changes,
    )
