"""The verdicts of ``bench compare`` (pure: no printing, no files).

:func:`evaluate_metric` applies one :class:`~bench.record.metrics.Metric`'s rule to a base/head pair;
:func:`compare_benchmark` combines a benchmark's metrics into one :class:`Status`;
:func:`compare_runs` does this for every benchmark of two :class:`~bench.record.results.Results` under one
:class:`CompareSettings`, after :func:`~bench.record.results.environment_differences` has said whether
the runs can be compared at all (``bench merge`` applies the same rule to its inputs).

How a time metric is judged is a :data:`Judge` chosen per benchmark and metric by
:attr:`CompareSettings.judge_for`: by default :func:`evaluate_metric` (medians against the noise
between the runs, then a Mann-Whitney U test on the rounds); runs measured round by round in
alternation can be judged on the rounds' paired log ratios instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Literal, Protocol

from bench.judge.paired import PairedTest, holm, paired_test
from bench.judge.stats import TimeNoise, mann_whitney, time_noise
from bench.record.exits import EXIT_INCOMPARABLE, EXIT_OK, EXIT_REGRESSION
from bench.record.metrics import METRICS, Exact, Metric, Reported, TimeRule, Tolerance
from bench.record.results import Benchmark, Environment, Results, environment_differences
from bench.record.schema import Record, seed_values


class Status(str, Enum):
    """One per benchmark present in either run."""

    UNCHANGED = "unchanged"
    REGRESSED = "regressed"
    IMPROVED = "improved"
    INCONCLUSIVE = "inconclusive"
    NEW = "new"
    MISSING = "missing"
    FAILED = "failed"
    FIXED = "fixed"
    NOT_COMPARABLE = "not comparable"


#: Per metric: ``added``/``removed`` when only one side has a value.
Verdict = Literal["unchanged", "improved", "regressed", "inconclusive", "added", "removed", "reported"]
#: Verdicts that say nothing happened worth a row: "reported" metrics are derived from judged ones.
_QUIET = frozenset({"unchanged", "reported"})


@dataclass(frozen=True, slots=True)
class MetricDelta:
    """One metric of one benchmark: both values (SI units), the change and the rule's verdict."""

    metric: Metric  # with the thresholds actually applied
    base: float | None
    head: float | None
    verdict: Verdict
    #: (head - base) / base; ``None`` when base is 0 or a side is missing (see :attr:`new_nonzero`).
    rel: float | None = None
    p_value: float | None = None
    note: str = ""
    #: The significance test behind ``p_value`` (e.g. "Mann-Whitney U"), when one was run.
    test: str = ""

    @property
    def key(self) -> str:
        return self.metric.key

    @property
    def delta(self) -> float | None:
        if self.base is None or self.head is None:
            return None
        return self.head - self.base

    @property
    def new_nonzero(self) -> bool:
        """A zero baseline that became nonzero: no relative change exists, the absolute rule decides."""
        return self.base == 0 and self.head is not None and self.head != 0

    @property
    def size(self) -> float:
        """How far the value moved, for ranking: |log(head/base)|, infinite for a new nonzero value."""
        if self.base is None or self.head is None or self.base == self.head:
            return 0.0
        if self.base <= 0 or self.head <= 0:
            return math.inf
        return abs(math.log(self.head / self.base))


class Judge(Protocol):
    """Decides one metric of one benchmark: :func:`evaluate_metric`'s signature. ``floor`` is the
    relative move the noise between the runs explains (0 where there is none)."""

    def __call__(
        self, metric: Metric, base: float | None, head: float | None,
        base_samples: Sequence[float] | None = None, head_samples: Sequence[float] | None = None,
        noise_floor: float = 0.0,
    ) -> MetricDelta: ...


#: Chooses the judge of one metric of one benchmark (both sides present and ok).
JudgeFor = Callable[[Benchmark, Benchmark, Metric], Judge]


@dataclass(frozen=True)
class CompareSettings:
    """How two runs are judged (no output paths: those belong to the renderers' caller)."""

    #: Metric key → main threshold (relative for times and memory, a fraction for accuracy).
    thresholds: Mapping[str, float] = field(default_factory=dict)
    allow_incomparable: bool = False
    #: Overrides :attr:`TimeRule.noise_z` for every time metric (0 ignores the noise between runs).
    noise_z: float | None = None
    #: The judge per benchmark and metric; ``None`` judges every metric with :func:`evaluate_metric`.
    judge_for: JudgeFor | None = None


@dataclass(frozen=True, slots=True)
class BenchmarkComparison:
    name: str
    status: Status
    base: Benchmark | None
    head: Benchmark | None
    metrics: tuple[MetricDelta, ...] = ()
    notes: tuple[str, ...] = ()
    #: ``failed`` because the case went from ok (or absent) to not ok; "still failing" does not gate.
    newly_failing: bool = False

    @property
    def gates(self) -> bool:
        """Whether this benchmark alone makes ``bench compare`` exit 1."""
        return self.status is Status.REGRESSED or (self.status is Status.FAILED and self.newly_failing)

    @property
    def changed_metrics(self) -> tuple[MetricDelta, ...]:
        return tuple(m for m in self.metrics if m.verdict not in _QUIET)

    @property
    def case(self) -> str:
        side = self.head or self.base
        assert side is not None
        return side.record.case

    @property
    def size(self) -> float:
        """The largest move of any changed metric (see :attr:`MetricDelta.size`)."""
        return max((d.size for d in self.metrics if d.verdict not in _QUIET), default=0.0)


@dataclass(frozen=True)
class Comparison:
    base: Results
    head: Results
    benchmarks: tuple[BenchmarkComparison, ...]
    settings: CompareSettings = CompareSettings()
    #: Differences that make the runs not comparable (device, profile): "field: base X, head Y".
    incomparable: tuple[str, ...] = ()
    #: Other environment differences worth knowing (torch version, GPU, threads...).
    env_notes: tuple[str, ...] = ()
    #: Accuracy compared exactly (same environment, deterministic, same seed per record).
    exact_accuracy: bool = False
    #: Spread of the time medians between the runs; ``None`` when too few to estimate.
    noise: TimeNoise | None = None
    #: Per time metric, the relative move the noise explains (:func:`noise_floor`), as applied.
    floors: Mapping[str, float] = field(default_factory=dict)
    #: Runs measured in alternation (``bench ab``): how their time metrics were judged; else ``None``.
    paired: PairedJudging | None = None

    @property
    def thresholds(self) -> Mapping[str, float]:
        return self.settings.thresholds

    @property
    def allow_incomparable(self) -> bool:
        return self.settings.allow_incomparable

    @property
    def blocked(self) -> bool:
        """Runs not comparable and not overridden: no verdicts were computed."""
        return bool(self.incomparable) and not self.allow_incomparable

    @property
    def exit_code(self) -> int:
        if self.blocked:
            return EXIT_INCOMPARABLE
        if any(b.gates for b in self.benchmarks):
            return EXIT_REGRESSION
        return EXIT_OK

    def counts(self) -> dict[Status, int]:
        result = {s: 0 for s in Status}
        for b in self.benchmarks:
            result[b.status] += 1
        return result


def parse_threshold(text: str) -> tuple[str, float]:
    """``METRIC=VALUE`` → (key, value), validated against :data:`METRICS` and the metric's rule."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--threshold {text!r}: expected METRIC=VALUE, e.g. time_forward_s=0.15")
    if key not in METRICS:
        raise ValueError(f"--threshold {text!r}: unknown metric {key!r}; known: {', '.join(METRICS)}")
    try:
        value = float(value_text)
    except ValueError:
        raise ValueError(f"--threshold {text!r}: {value_text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"--threshold {text!r}: the threshold must be a finite number >= 0")
    METRICS[key].with_threshold(value)  # raises for exact metrics, which take no threshold
    return key, value


def effective_metric(metric: Metric, thresholds: Mapping[str, float], exact: bool) -> Metric:
    """The metric with the command line's threshold applied; a reproducible metric is checked
    exactly when ``exact`` holds, unless the user set its threshold explicitly."""
    if metric.key in thresholds:
        return metric.with_threshold(thresholds[metric.key])
    if exact and metric.reproducible and isinstance(metric.rule, Tolerance):
        return replace(metric, rule=replace(metric.rule, rel=0.0, abs=0.0, spread_k=0.0))
    return metric


def evaluate_metric(
    metric: Metric,
    base: float | None,
    head: float | None,
    base_samples: Sequence[float] | None = None,
    head_samples: Sequence[float] | None = None,
    noise_floor: float = 0.0,
) -> MetricDelta:
    """Apply ``metric.rule`` to one base/head pair (values in SI units, as stored). ``noise_floor`` is
    the relative move the noise between the two runs explains (times only; see :func:`noise_floor`)."""
    if base is None and head is None:
        raise ValueError(f"{metric.key}: nothing to compare")
    if base is None:
        return MetricDelta(metric, base, head, "added", note="no value in base")
    if head is None:
        return MetricDelta(metric, base, head, "removed", note="no value in head")
    delta = head - base
    rel = delta / base if base != 0 else None
    if isinstance(metric.rule, Reported):
        return MetricDelta(metric, base, head, "reported", rel=delta / base if base else None, note=metric.rule.why)
    if delta == 0:
        return MetricDelta(metric, base, head, "unchanged", rel=0.0)
    worse = delta > 0 if metric.direction == "lower" else delta < 0
    direction: Verdict = "regressed" if worse else "improved"
    rule = metric.rule
    if isinstance(rule, Exact):
        return MetricDelta(metric, base, head, direction, rel=rel, note="exact metric changed")
    if isinstance(rule, Tolerance):
        # A zero baseline has no relative change ("new nonzero"): the absolute tolerance decides.
        spread = rule.spread_floor(base_samples or (), head_samples or ())
        beyond = abs(delta) > max(rule.abs, spread) and (rel is None or abs(rel) > rule.rel)
        if not beyond:
            note = "within tolerance"
            if spread > rule.abs:
                note = f"within the seeds' spread (±{spread * metric.scale:.3g} {metric.unit}, {rule.spread_k:g} SE)"
            return MetricDelta(metric, base, head, "unchanged", rel=rel, note=note)
        if spread > rule.abs:
            note = f"beyond the seeds' spread (±{spread * metric.scale:.3g} {metric.unit}, {rule.spread_k:g} SE)"
            return MetricDelta(metric, base, head, direction, rel=rel, note=note)
        return MetricDelta(metric, base, head, direction, rel=rel)
    if isinstance(rule, TimeRule):
        moved = abs(delta) > rule.abs_floor and (rel is None or abs(rel) > rule.rel)
        if not moved:
            return MetricDelta(metric, base, head, "unchanged", rel=rel, note="within threshold")
        if rel is not None and abs(rel) <= noise_floor:
            return MetricDelta(
                metric, base, head, "inconclusive", rel=rel,
                note=f"within the noise between these runs (±{noise_floor:.0%})",
            )
        if not base_samples or not head_samples or len(base_samples) < 2 or len(head_samples) < 2:
            return MetricDelta(
                metric, base, head, "inconclusive", rel=rel, note="moved past the threshold; no raw samples to test"
            )
        p = mann_whitney(base_samples, head_samples, greater=delta > 0)
        test = "Mann-Whitney U"
        if p < rule.alpha:
            return MetricDelta(metric, base, head, direction, rel=rel, p_value=p, test=test)
        return MetricDelta(
            metric, base, head, "inconclusive", rel=rel, p_value=p, test=test,
            note=f"moved past the threshold but not significant (p={p:.3g} >= {rule.alpha:g})",
        )
    raise TypeError(f"{metric.key}: unknown rule {rule!r}")


#: Record fields that must agree for two records to be compared at all.
_IDENTITY_FIELDS = ("kind", "case")
#: Fields that define what was measured; a difference makes the pair not comparable unless the user
#: passed --allow-incomparable (then it becomes a note).
_SHAPE_FIELDS = (
    "device", "profile", "batch_size", "input_size", "in_channels", "num_classes", "dataset", "train_steps", "epochs",
    "precision", "memory_format", "compile",
)


#: Record fields that say which initial weights a training record started from (bench/measure/weights.py);
#: ``None`` (and a file written before they existed) means random initialisation.
WEIGHTS_FIELDS = ("weights", "weights_sha256")
#: How many cases a not-comparable sentence about weights names before it counts the rest.
_WEIGHTS_NAMED = 5


def _weights_change(b: Record, h: Record) -> str | None:
    """``field: base X, head Y`` for the first weights field that differs, else ``None``."""
    for name in WEIGHTS_FIELDS:
        if getattr(b, name) != getattr(h, name):
            return f"{name}: base {getattr(b, name)!r}, head {getattr(h, name)!r}"
    return None


def weights_differences(base: Results, head: Results) -> list[str]:
    """Benchmarks both runs measured (ok) from different initial weights, each naming the benchmark, the
    field and both values. An accuracy trained from other weights measures those weights, not the code,
    so such runs are not comparable, as runs under other modes are not (exit 3): a per-benchmark "not
    comparable" would let ``bench compare`` exit 0 over exactly the accuracies a CI gate is there for.
    Under ``--allow-incomparable`` the rest is compared and those accuracies still are not
    (:func:`compare_benchmark`)."""
    changed: list[str] = []
    for name, b in base.benchmarks.items():
        h = head.benchmarks.get(name)
        if h is None or not (b.ok and h.ok):
            continue  # a failed case measured no accuracy
        change = _weights_change(b.record, h.record)
        if change is not None:
            changed.append(f"{name}: {change}")
    if len(changed) > _WEIGHTS_NAMED:
        changed = [*changed[:_WEIGHTS_NAMED], f"and {len(changed) - _WEIGHTS_NAMED} more trained from other weights"]
    if changed:
        changed = [f"initial weights differ ({base.path} vs {head.path}): " + "; ".join(changed)]
    return changed


def compare_benchmark(
    name: str,
    base: Benchmark | None,
    head: Benchmark | None,
    *,
    settings: CompareSettings = CompareSettings(),
    exact_env: bool = False,
    floors: Mapping[str, float] = {},
) -> BenchmarkComparison:
    """The status of one benchmark from its two sides (either may be absent). ``floors`` widens the
    time rules by the noise between the runs (metric key → relative move, see :func:`noise_floor`)."""
    if base is None and head is None:
        raise ValueError(f"{name}: absent from both runs")
    if base is None:
        assert head is not None
        if head.ok:
            return BenchmarkComparison(name, Status.NEW, None, head, notes=("new in head",))
        return BenchmarkComparison(
            name, Status.FAILED, None, head, notes=(f"new in head, and failing: {_failure(head)}",), newly_failing=True
        )
    if head is None:
        return BenchmarkComparison(name, Status.MISSING, base, None, notes=("missing from head",))
    if base.ok and not head.ok:
        return BenchmarkComparison(
            name, Status.FAILED, base, head, notes=(f"newly failing: {_failure(head)}",), newly_failing=True
        )
    if not base.ok and head.ok:
        return BenchmarkComparison(name, Status.FIXED, base, head, notes=(f"fixed (base was {_failure(base)})",))
    if not base.ok and not head.ok:
        return BenchmarkComparison(
            name, Status.FAILED, base, head,
            notes=(f"still failing (base: {base.record.status}, head: {_failure(head)})",),
        )

    b, h = base.record, head.record
    identity = [f"{f}: {getattr(b, f)!r} vs {getattr(h, f)!r}" for f in _IDENTITY_FIELDS if getattr(b, f) != getattr(h, f)]
    shape = [f"{f}: {getattr(b, f)!r} vs {getattr(h, f)!r}" for f in _SHAPE_FIELDS if getattr(b, f) != getattr(h, f)]
    if identity or (shape and not settings.allow_incomparable):
        return BenchmarkComparison(name, Status.NOT_COMPARABLE, base, head, notes=tuple(identity + shape))
    notes = [f"compared although {s} (--allow-incomparable)" for s in shape]
    weights_change = _weights_change(b, h)
    if weights_change is not None:
        notes.append(f"accuracy not compared: trained from different weights ({weights_change})")

    # Bit-for-bit only when every seed is the same one: the seeds list, else the single seed.
    exact = exact_env and b.seed is not None and b.seed == h.seed and (b.seeds or [b.seed]) == (h.seeds or [h.seed])
    deltas: list[MetricDelta] = []
    for metric in METRICS.values():
        bv, hv = getattr(b, metric.key, None), getattr(h, metric.key, None)
        if bv is None and hv is None:
            continue
        if metric.depends_on_weights and weights_change is not None:
            continue  # never judged across initial weights, --allow-incomparable or not
        eff = effective_metric(metric, settings.thresholds, exact)
        bs = getattr(b, metric.samples_key) if metric.samples_key else None
        hs = getattr(h, metric.samples_key) if metric.samples_key else None
        if isinstance(eff.rule, Tolerance) and eff.rule.spread_k:
            bs, hs = seed_values(b, metric.key), seed_values(h, metric.key)  # one value per seed
        judge: Judge = settings.judge_for(base, head, eff) if settings.judge_for else evaluate_metric
        deltas.append(judge(eff, bv, hv, bs, hs, floors.get(metric.key, 0.0)))
    return BenchmarkComparison(name, _combine(deltas), base, head, tuple(deltas), tuple(notes))


def noise_floor(
    metric: Metric, noise: TimeNoise | None, thresholds: Mapping[str, float] = {}, noise_z: float | None = None
) -> float:
    """The relative move of ``metric`` that the noise between the runs explains; 0 for non-time
    metrics, without a noise estimate, or when the user set the metric's threshold explicitly."""
    rule = metric.rule
    if noise is None or not isinstance(rule, TimeRule) or metric.key in thresholds:
        return 0.0
    if noise_z is not None:
        rule = replace(rule, noise_z=noise_z)
    sigma = noise.sigma.get(metric.key)
    return 0.0 if sigma is None else rule.noise_floor(sigma)


def _combine(deltas: Sequence[MetricDelta]) -> Status:
    """Regressed if any metric regressed. An inconclusive move (or a metric that disappeared) ranks
    above an improvement, so that a possible slowdown is never hidden behind a speedup elsewhere."""
    verdicts = {d.verdict for d in deltas}
    if "regressed" in verdicts:
        return Status.REGRESSED
    if verdicts & {"inconclusive", "removed"}:
        return Status.INCONCLUSIVE
    if "improved" in verdicts:
        return Status.IMPROVED
    return Status.UNCHANGED


def _failure(bench: Benchmark) -> str:
    error = (bench.record.error or "").strip().splitlines()
    return f"{bench.record.status}: {error[0]}" if error else bench.record.status


#: Environment fields that must match for accuracy to be reproducible bit for bit.
_EXACT_ENV_FIELDS = ("torch", "device_name", "cpu", "threads", "deterministic")


def reproducible_env(base: Environment, head: Environment) -> bool:
    """Same torch, device, threads and deterministic algorithms on: fixed-seed training then gives the
    same accuracy bit for bit. ``deterministic`` must be on (not merely equal): cuDNN autotuning
    makes GPU training vary between runs otherwise."""
    return base.deterministic is True and all(getattr(base, f) == getattr(head, f) for f in _EXACT_ENV_FIELDS)


def compare_runs(base: Results, head: Results, settings: CompareSettings = CompareSettings()) -> Comparison:
    """Compare every benchmark of two runs (pure: no printing, no files)."""
    blocking, noted = environment_differences(base, head)
    blocking += weights_differences(base, head)
    exact_env = reproducible_env(base.env, head.env)
    blocked = Comparison(
        base, head, benchmarks=(), settings=settings, incomparable=tuple(blocking),
        env_notes=tuple(noted), exact_accuracy=exact_env,
    )
    if blocked.blocked:
        return blocked  # no verdicts across devices or profiles unless asked for
    noise = time_noise(base, head)
    floors = {
        m.key: noise_floor(m, noise, settings.thresholds, settings.noise_z)
        for m in METRICS.values() if isinstance(m.rule, TimeRule)
    }
    paired = paired_judging(base, head, settings.thresholds) if settings.judge_for is None else None
    if paired is not None:
        settings = replace(settings, judge_for=paired.judge_for)
    names = list(base.benchmarks) + [n for n in head.benchmarks if n not in base.benchmarks]
    results = tuple(
        compare_benchmark(
            name, base.benchmarks.get(name), head.benchmarks.get(name),
            settings=settings, exact_env=exact_env, floors=floors,
        )
        for name in names
    )
    return replace(blocked, benchmarks=results, noise=noise, floors=floors, paired=paired)


# ----------------------------------------------------------------------------------------------------
# paired rounds (bench ab)
# ----------------------------------------------------------------------------------------------------


def paired_sides(base: Benchmark, head: Benchmark) -> str | None:
    """The pairing id when both records were measured in alternation by one ``bench ab`` run, on
    opposite sides; else ``None``."""
    b, h = base.record.pairing, head.record.pairing
    if not b or not h or b.get("id") is None or b.get("id") != h.get("id") or b.get("side") == h.get("side"):
        return None
    return str(b["id"])


def _paired_samples(base: Benchmark, head: Benchmark, metric: Metric) -> tuple[list[float], list[float]] | None:
    if not isinstance(metric.rule, TimeRule) or metric.samples_key is None or paired_sides(base, head) is None:
        return None
    bs, hs = getattr(base.record, metric.samples_key), getattr(head.record, metric.samples_key)
    if not bs or not hs or len(bs) != len(hs) or len(bs) < 2 or min(*bs, *hs) <= 0:
        return None
    return list(bs), list(hs)


@dataclass(frozen=True)
class PairedJudging:
    """Every paired time metric of two runs, tested at once so that the p-values can be corrected for
    their number (Holm), and the :data:`Judge` that reads the result per benchmark and metric."""

    tests: Mapping[tuple[str, str], PairedTest]  # (benchmark, metric) → test
    adjusted: Mapping[tuple[str, str], float]  # Holm-adjusted p-values
    thresholds: Mapping[str, float]
    ids: tuple[str, ...]

    @property
    def family(self) -> int:
        """How many time metrics were judged together (the Holm family)."""
        return len(self.tests)

    def judge_for(self, base: Benchmark, head: Benchmark, metric: Metric) -> Judge:
        key = (base.name, metric.key)
        if key not in self.tests:
            return evaluate_metric
        test, adjusted = self.tests[key], self.adjusted[key]

        def judge(
            metric: Metric, base: float | None, head: float | None,
            base_samples: Sequence[float] | None = None, head_samples: Sequence[float] | None = None,
            noise_floor: float = 0.0,
        ) -> MetricDelta:
            # the samples were tested already (with the run's other metrics, for Holm); the noise
            # between runs does not enter a paired comparison
            return evaluate_paired(metric, base, head, test, adjusted, self.family,
                                   explicit=metric.key in self.thresholds)

        return judge


def paired_judging(base: Results, head: Results, thresholds: Mapping[str, float] = {}) -> PairedJudging | None:
    """The paired tests of every time metric whose two records share a ``bench ab`` pairing, or
    ``None`` when no benchmark of the two runs is paired."""
    tests: dict[tuple[str, str], PairedTest] = {}
    ids: set[str] = set()
    for name, b in base.benchmarks.items():
        h = head.benchmarks.get(name)
        if h is None or not (b.ok and h.ok):
            continue
        for metric in METRICS.values():
            samples = _paired_samples(b, h, metric)
            if samples is not None:
                workers = int((b.record.pairing or {}).get("workers") or 1)
                tests[(name, metric.key)] = paired_test(*samples, groups=workers)
                ids.add(str(paired_sides(b, h)))
    if not tests:
        return None
    keys = list(tests)
    adjusted = dict(zip(keys, holm([tests[k].p_value for k in keys])))
    return PairedJudging(tests, adjusted, dict(thresholds), tuple(sorted(ids)))


#: How :attr:`MetricDelta.test` names a verdict on paired rounds.
PAIRED_TEST = "Wilcoxon signed-rank, paired rounds, Holm"


def evaluate_paired(
    metric: Metric, base: float | None, head: float | None, test: PairedTest, adjusted_p: float, family: int,
    *, explicit: bool = False,
) -> MetricDelta:
    """One time metric judged on its paired rounds: regressed (or improved) when the estimated ratio
    moved past the threshold and the Holm-corrected signed-rank p is below ``paired_alpha``. Every
    verdict names the interval and the smallest slowdown this many pairs would have caught."""
    rule = metric.rule
    assert isinstance(rule, TimeRule)
    threshold = rule.rel if explicit else rule.paired_rel
    change = test.change
    lo, hi = test.interval
    detectable = test.detectable(rule.paired_alpha / max(1, family))
    catch = (f"would have caught ≥ {max(threshold, detectable):.0%}" if detectable is not None
             else f"{test.n} pairs cannot reach p < {rule.paired_alpha:g} over {family} metrics")
    told = f"paired {change:+.1%} (95% CI {lo:+.1%} to {hi:+.1%}, n={test.n}, Holm p={adjusted_p:.2g})"
    common: dict[str, Any] = {"rel": change, "p_value": adjusted_p, "test": PAIRED_TEST}
    # With several worker processes per side, each worker pair must see the move (past half the
    # threshold, the same way): one process running persistently slow moves only its own pair.
    groups = test.group_changes
    agree = all(g * change > 0 and abs(g) > threshold / 2 for g in groups)
    if groups:
        told += "; worker pairs " + ", ".join(f"{g:+.0%}" for g in groups)
    if abs(change) > threshold and adjusted_p < rule.paired_alpha and not agree:
        return MetricDelta(metric, base, head, "inconclusive",
                           note=f"{told}: the worker pairs disagree (a process's own speed, not the code's)", **common)
    if abs(change) > threshold and adjusted_p < rule.paired_alpha:
        return MetricDelta(metric, base, head, "regressed" if change > 0 else "improved", note=told, **common)
    if abs(change) > threshold:
        return MetricDelta(metric, base, head, "inconclusive", note=f"{told}: past ±{threshold:.0%} but not significant",
                           **common)
    small = "; significant, but within" if adjusted_p < rule.paired_alpha else "; within"
    return MetricDelta(metric, base, head, "unchanged", note=f"{told}{small} ±{threshold:.0%}; {catch}",
                       **common)


__all__ = [
    "BenchmarkComparison",
    "CompareSettings",
    "Comparison",
    "Judge",
    "JudgeFor",
    "MetricDelta",
    "PairedJudging",
    "Status",
    "Verdict",
    "compare_benchmark",
    "compare_runs",
    "effective_metric",
    "environment_differences",
    "evaluate_metric",
    "evaluate_paired",
    "noise_floor",
    "paired_judging",
    "paired_sides",
    "parse_threshold",
    "reproducible_env",
    "weights_differences",
]
