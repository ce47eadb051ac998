"""Statistics of ``bench compare``: the noise between two runs' time medians, and the Mann-Whitney U
test on a benchmark's raw rounds. Pure Python: a comparison of ten thousand benchmarks should not
pay for importing scipy (half a second and 90 MB), and the rounds are few.

Why the noise between runs matters, and the measurements behind its factor: :class:`bench.record.metrics.TimeRule`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from bench.record.metrics import METRICS, TimeRule
from bench.record.results import Results

#: Fewer time medians than this give no usable spread: a metric with fewer uses the spread pooled over
#: all time metrics, and with fewer pooled the relative threshold alone decides.
MIN_NOISE_MEDIANS = 12


@dataclass(frozen=True)
class TimeNoise:
    """How much the time medians of two runs disagree: per time metric, the robust spread σ
    (:func:`robust_spread` of log(head/base) over every benchmark measured in both), and the
    median log ratio over all of them. A few real regressions barely move either (the median
    tolerates up to half). Per metric, because phases differ: a memory-bound optimizer step drifts
    more than a compute-bound forward pass on a shared machine."""

    sigma: Mapping[str, float]
    medians: Mapping[str, int]
    center: float

    @property
    def ratio(self) -> float:
        """The median head/base time ratio: how much faster or slower head ran overall."""
        return math.exp(self.center)

    @property
    def n(self) -> int:
        return sum(self.medians.values())


def robust_spread(values: Sequence[float]) -> tuple[float, float]:
    """(median, 1.4826 × median absolute deviation): a standard deviation that a few outliers do
    not move (the factor makes it σ for normal data)."""
    center = statistics.median(values)
    return center, 1.4826 * statistics.median(abs(x - center) for x in values)


def time_noise(base: Results, head: Results) -> TimeNoise | None:
    """The noise between two runs' times, or ``None`` when fewer than :data:`MIN_NOISE_MEDIANS`
    medians are comparable in all."""
    keys = [m.key for m in METRICS.values() if isinstance(m.rule, TimeRule)]
    logs: dict[str, list[float]] = {}
    for name, b in base.benchmarks.items():
        h = head.benchmarks.get(name)
        if h is None or not (b.ok and h.ok):
            continue
        for key in keys:
            bv, hv = getattr(b.record, key, None), getattr(h.record, key, None)
            if bv and hv and bv > 0 and hv > 0:
                logs.setdefault(key, []).append(math.log(hv / bv))
    pooled = [x for values in logs.values() for x in values]
    if len(pooled) < MIN_NOISE_MEDIANS:
        return None
    center, pooled_sigma = robust_spread(pooled)
    sigma = {
        key: robust_spread(values)[1] if len(values) >= MIN_NOISE_MEDIANS else pooled_sigma
        for key, values in logs.items()
    }
    return TimeNoise(sigma=sigma, medians={k: len(v) for k, v in logs.items()}, center=center)


def mann_whitney(base: Sequence[float], head: Sequence[float], *, greater: bool) -> float:
    """One-sided Mann-Whitney U p-value that head's samples are greater (or less) than base's.

    One-sided in the direction the median already moved: the question asked is "is head really
    slower?", and with the few rounds of a smoke run a two-sided test could never reach alpha.
    As scipy's ``mannwhitneyu`` (method "auto", continuity correction): the exact null distribution
    when a side has at most 8 samples and nothing ties, else the normal approximation with the tie
    correction. A degenerate case (everything tied) gives 1: not significant."""
    x, y = (list(head), list(base)) if greater else (list(base), list(head))
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return 1.0
    ranks, ties = _ranks(x + y)
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    if (n1 <= 8 or n2 <= 8) and not any(t > 1 for t in ties):
        counts = _u_counts(min(n1, n2), max(n1, n2))
        k = round(u)
        p = sum(counts[k:]) / sum(counts)
    else:
        n = n1 + n2
        tie_term = sum(t**3 - t for t in ties)
        var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
        if var <= 0:
            return 1.0
        z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(var)
        p = 0.5 * math.erfc(z / math.sqrt(2))
    p = min(max(p, 0.0), 1.0)
    return p if math.isfinite(p) else 1.0


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) of ``values`` and the size of every group of equal values."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@lru_cache(maxsize=64)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orderings give U = 0, 1, …, m·n: the coefficients of the Gaussian
    binomial [m+n choose m]_q, built as ∏ (1 − q^(n+i)) / (1 − q^i) in exact integers."""
    size = m * n + 1
    poly = [1] + [0] * (size - 1)
    for i in range(1, m + 1):
        a = n + i
        for k in range(size - 1, a - 1, -1):  # multiply by (1 - q^a)
            poly[k] -= poly[k - a]
        for k in range(i, size):  # divide by (1 - q^i): multiply by 1 + q^i + q^2i + …
            poly[k] += poly[k - i]
    return tuple(poly)


__all__ = ["MIN_NOISE_MEDIANS", "TimeNoise", "mann_whitney", "robust_spread", "time_noise"]
