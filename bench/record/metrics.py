"""Every metric archbench records, declared once: key, unit, direction and regression rule.

Tables, charts and ``bench compare`` are driven from :data:`METRICS`; nothing else hard-codes a unit or
decides what "worse" means. A rule's thresholds are defaults that ``bench compare`` may override per
metric on the command line (``--threshold time_forward_s=0.10``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from bench.record.schema import EFFICIENCY, quantity

Direction = Literal["lower", "higher"]


@dataclass(frozen=True)
class Exact:
    """Any change is reported; a change in the bad direction is a regression (params, MACs)."""

    kind: Literal["exact"] = "exact"


@dataclass(frozen=True)
class TimeRule:
    """Regression when the median moves by more than ``rel`` in the bad direction, by more than
    ``abs_floor`` seconds, beyond the noise between the two runs, *and* a Mann-Whitney U test on the
    raw samples gives p < ``alpha``. Without raw samples on both sides the verdict is at best
    inconclusive.

    The noise between runs (the one full account; README, results/README.md and the tests point
    here) is not in either run's samples: rounds taken a second apart agree, runs taken minutes apart
    on a shared machine need not. All phases of a case move together, so it is the machine's speed in
    that case's second, not the code; a test on the rounds alone called 16 of 160 medians of a clean
    same-commit pair "regressed" (44 where one run was disturbed). ``bench compare`` therefore
    estimates the noise from the pair itself, per time metric,
    as the robust spread σ (1.4826 × median absolute deviation, so a few real changes barely move it)
    of log(head/base) over every benchmark both runs measured, and reports a move within
    exp(``noise_z``·σ) − 1 as inconclusive, naming that floor. On a quiet machine σ is a few percent
    and ``rel`` decides: that is where timing gates belong. Measured on the 2-vCPU VMs this project is developed on (five undisturbed smoke runs of
    one commit, 20 ordered pairs): σ 0.09–0.30 per phase, and the largest slowdown of any of a pair's
    160 medians 2.4–6.0σ (median 3.9σ; Adam steps and inference of the ResNet-50 cases drift most).
    At 5, one pair in 20 would have gated on noise. A sixth run, with another process competing for
    the cores, reached 7–10σ. Hence 7: on a quiet machine with σ = 0.02 the floor is 15 %.
    """

    rel: float = 0.10
    abs_floor: float = 1e-4
    alpha: float = 0.01
    noise_z: float = 7.0
    #: Runs measured in alternation (``bench ab``) are judged on their paired rounds instead: a
    #: regression when the Hodges–Lehmann estimate of the paired ratio moved past ``paired_rel`` and the
    #: signed-rank test, Holm-corrected over every time metric of the run, gives p < ``paired_alpha``.
    #: The noise between runs cancels out of a pair, so the threshold can sit below ``rel``: see README
    #: "Catching regressions" for the A/A moves that set it.
    paired_rel: float = 0.05
    paired_alpha: float = 0.05
    kind: Literal["time"] = "time"

    def noise_floor(self, sigma: float) -> float:
        """The relative move that the noise σ (of log ratios) can explain at ``noise_z``."""
        return math.expm1(self.noise_z * sigma)


@dataclass(frozen=True)
class Tolerance:
    """Regression when the value moves in the bad direction by more than ``rel`` (relative) *and*
    ``abs`` (absolute, in the metric's unit).

    ``spread_k`` (accuracy under ``--bench-seeds``): when either side has two or more seeds, the absolute
    tolerance widens to ``spread_k`` standard errors of the difference of the two means, from the
    seeds' pooled spread: ``max(abs, k · s_p · sqrt(1/n_base + 1/n_head))``, ``s_p`` pooling the sample
    variances of the sides with two or more seeds. k = 3 because a comparison judges ~64 accuracies at
    once (32 cases, clean and deformed): for a mean difference that is pure seed noise, 3 standard
    errors are passed one time in ~700 per metric when the spread is well estimated (normal tail), and
    about one in 50 with three seeds a side (Student t, 4 degrees of freedom), where the absolute
    tolerance and the seeds' own granularity usually decide first. 2 would flag a same-code pair's
    seed noise in most runs of 64 metrics.
    """

    rel: float = 0.0
    abs: float = 0.0
    spread_k: float = 0.0
    kind: Literal["tolerance"] = "tolerance"

    def spread_floor(self, base: Sequence[float], head: Sequence[float]) -> float:
        """The absolute move the seeds' spread explains (0 without ``spread_k`` or without spread)."""
        sides = [v for v in (base, head) if len(v) >= 2]
        if not self.spread_k or not sides or not base or not head:
            return 0.0
        dof = sum(len(v) - 1 for v in sides)
        pooled = math.sqrt(sum((len(v) - 1) * statistics.variance(v) for v in sides) / dof)
        return self.spread_k * pooled * math.sqrt(1 / len(base) + 1 / len(head))


@dataclass(frozen=True)
class Reported:
    """Shown and written, never judged: the metric is derived from others that carry the rule (achieved
    TFLOP/s and MFU are FLOPs over a time median, and the time gates), or is a rate whose window gives no
    samples to test (mean power). A rule here would judge one change twice, the second time without the
    significance test."""

    why: str = ""
    kind: Literal["reported"] = "reported"


Rule = Exact | TimeRule | Tolerance | Reported


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    direction: Direction
    rule: Rule
    #: Key of the raw per-round samples this metric is the median of, if any.
    samples_key: str | None = None
    #: Multiply the stored value by this to show it in ``unit`` (stored values are SI: s, bytes, MACs).
    scale: float = 1.0
    #: Bit-for-bit reproducible given the same environment and seed; ``bench compare`` then checks it
    #: exactly instead of with the rule's tolerance (fixed-budget accuracy).
    reproducible: bool = False
    #: An outcome of training that depends on the initial weights (accuracy): ``bench compare`` never
    #: compares it between records trained from different weights (bench/judge/verdicts.py).
    depends_on_weights: bool = False
    #: The values a measurement can take (SI units, as stored); a file holding another is refused when it is
    #: read (bench/record/results.py). Every metric is a count, a duration, a size, a rate or a fraction.
    bounds: tuple[float, float] = (0.0, math.inf)

    def with_threshold(self, value: float) -> Metric:
        """The same metric with its main threshold replaced (relative for times/memory, points for
        accuracy)."""
        rule = self.rule
        if isinstance(rule, TimeRule):
            return replace(self, rule=replace(rule, rel=value))
        if isinstance(rule, Tolerance):
            if rule.rel:
                return replace(self, rule=replace(rule, rel=value))
            return replace(self, rule=replace(rule, abs=value))
        how = "reported, not judged" if isinstance(rule, Reported) else "compared exactly"
        raise ValueError(f"metric {self.key!r} is {how}; it takes no threshold")


_MEM = Tolerance(rel=0.05, abs=1 << 20)  # 5 % and 1 MiB: allocator rounding is below both
# Accuracy moves by whole test images; 2 points absorbs the run-to-run spread seen on CPU smoke runs
# with different thread counts. Exact runs (same env and seeds) are checked with abs=0 by `compare`;
# under --bench-seeds the seeds' spread widens the tolerance (Tolerance.spread_k says why 3).
_ACC = Tolerance(abs=0.02, spread_k=3.0)

# One value per case, not a median of rounds, so no significance test: a move counts past half again and
# past an absolute floor that covers the spread of a first step (eager: lazy allocation, tens of ms on a
# shared CPU) and of a cold compile on a shared machine (seconds). Compile time is a cold compile in an
# empty inductor cache (docs/modes.md), so a cache left by an earlier run cannot make it look faster.
_FIRST_STEP = Tolerance(rel=0.5, abs=0.5)
_COMPILE_TIME = Tolerance(rel=0.5, abs=2.0)

# Energy per round over a window of at least 5 s (full) holds still on one machine to a few percent, but
# between runs a GPU's power moves with its temperature and clocks: 15 % and 1 mJ, pending GPU data.
_ENERGY = Tolerance(rel=0.15, abs=1e-3)
_DERIVED = Reported("FLOPs over a time median: the time metric carries the rule")
_FRACTION = (0.0, 1.0)  # accuracies are stored as fractions of the test set

_METRICS: tuple[Metric, ...] = (
    Metric("params_total", "params", "M", "lower", Exact(), scale=1e-6),
    Metric("params_trainable", "trainable", "M", "lower", Exact(), scale=1e-6),
    Metric("macs_forward", "MACs", "G", "lower", Exact(), scale=1e-9),
    Metric("time_forward_s", "forward", "ms", "lower", TimeRule(), "samples_forward_s", 1e3),
    Metric("time_backward_s", "backward", "ms", "lower", TimeRule(), "samples_backward_s", 1e3),
    Metric("time_optimizer_s", "optimizer", "ms", "lower", TimeRule(), "samples_optimizer_s", 1e3),
    Metric("time_inference_s", "inference", "ms", "lower", TimeRule(), "samples_inference_s", 1e3),
    # the whole step without synchronisation between its phases (docs/modes.md)
    Metric("time_step_s", "whole step", "ms", "lower", TimeRule(), "samples_step_s", 1e3),
    Metric("time_epoch_s", "epoch", "s", "lower", TimeRule(), "samples_epoch_s"),
    Metric("mem_forward_bytes", "mem fwd", "MiB", "lower", _MEM, scale=1 / 2**20),
    Metric("mem_backward_bytes", "mem bwd", "MiB", "lower", _MEM, scale=1 / 2**20),
    Metric("mem_optimizer_bytes", "mem opt", "MiB", "lower", _MEM, scale=1 / 2**20),
    Metric("mem_inference_bytes", "mem inf", "MiB", "lower", _MEM, scale=1 / 2**20),
    Metric("mem_step_peak_bytes", "mem step peak", "MiB", "lower", _MEM, scale=1 / 2**20),
    Metric("mem_reserved_peak_bytes", "mem reserved", "MiB", "lower", _MEM, scale=1 / 2**20),
    # first step and compilation, one value per case (docs/modes.md)
    Metric("first_step_s", "first step", "s", "lower", _FIRST_STEP),
    Metric("compile_time_s", "compile", "s", "lower", _COMPILE_TIME),
    Metric("compile_recompiles", "recompiles", "count", "lower", Exact()),
    # energy over a window of untimed rounds (docs/efficiency.md): one value per case, no samples
    Metric("energy_step_j", "energy/step", "J", "lower", _ENERGY),
    Metric("energy_inference_j", "energy/inference", "J", "lower", _ENERGY),
    Metric("power_step_w", "power step", "W", "lower", Reported("a rate: energy per step carries the rule")),
    Metric("power_inference_w", "power inference", "W", "lower", Reported("a rate: energy per batch carries the rule")),
    # achieved throughput and utilisation, FLOPs over the time medians (docs/efficiency.md)
    *(Metric(quantity(p).tflops, f"TFLOP/s {p}", "TFLOP/s", "higher", _DERIVED) for p in EFFICIENCY),  # type: ignore[arg-type]
    *(Metric(quantity(p).mfu, f"MFU {p}", "%", "higher", _DERIVED, scale=100) for p in EFFICIENCY),  # type: ignore[arg-type]
    Metric("accuracy_test", "test acc", "%", "higher", _ACC, scale=100, reproducible=True, depends_on_weights=True,
           bounds=_FRACTION),
    Metric("accuracy_test_deformed", "deformed acc", "%", "higher", _ACC, scale=100, reproducible=True,
           depends_on_weights=True, bounds=_FRACTION),
    Metric("accuracy_val", "val acc", "%", "higher", _ACC, scale=100, reproducible=True, depends_on_weights=True,
           bounds=_FRACTION),
)

METRICS: Mapping[str, Metric] = {m.key: m for m in _METRICS}
assert len(METRICS) == len(_METRICS), "duplicate metric key"

