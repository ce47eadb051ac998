"""JSON: ``bench compare --json``, every verdict of a comparison in a stable envelope (the benchmarks
last, one per line, so that a large comparison streams instead of sitting in memory as one string)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from bench.judge import module_diff as md
from bench.judge.verdicts import BenchmarkComparison, Comparison
from bench.render.comparison import benchmark_module_diff, headline, is_paired, rule_text, warnings_of


def _benchmark_json(b: BenchmarkComparison, c: Comparison) -> dict[str, Any]:
    floors = c.floors
    out: dict[str, Any] = {
        "name": b.name,
        "status": b.status.value,
        "gates": b.gates,
        "newly_failing": b.newly_failing,
        "notes": list(b.notes),
        "metrics": [
            {
                "key": d.key,
                "unit": d.metric.unit,
                "scale": d.metric.scale,
                "base": d.base,
                "head": d.head,
                "rel": d.rel,
                "new_nonzero": d.new_nonzero,
                "p_value": d.p_value,
                "test": d.test or None,
                "verdict": d.verdict,
                "rule": rule_text(d.metric, floors.get(d.key, 0.0), paired=is_paired(d),
                                  explicit=d.key in c.thresholds),
                "note": d.note,
            }
            for d in b.metrics
        ],
    }
    diff = benchmark_module_diff(b)
    if diff is not None:  # files without a breakdown keep the shape they always had
        out["modules"] = md.diff_json(diff)
    return out


def _json_envelope(c: Comparison) -> dict[str, Any]:
    return {
        "base": c.base.path,
        "head": c.head.path,
        "exit_code": c.exit_code,
        "headline": headline(c),
        "incomparable": list(c.incomparable),
        "allow_incomparable": c.allow_incomparable,
        "environment_notes": list(c.env_notes),
        "messages": [{"level": m.level.value, "text": m.text} for m in warnings_of(c)],
        "exact_accuracy": c.exact_accuracy,
        "thresholds": dict(c.thresholds),
        "time_noise": None if c.noise is None else {
            "sigma": dict(c.noise.sigma), "median_ratio": c.noise.ratio, "medians": dict(c.noise.medians),
            "floor": dict(c.floors),
        },
        "counts": {s.value: n for s, n in c.counts().items()},
    }


def comparison(c: Comparison) -> dict[str, Any]:
    """Every verdict, as a JSON object (``benchmarks`` last)."""
    return {**_json_envelope(c), "benchmarks": [_benchmark_json(b, c) for b in c.benchmarks]}


def comparison_chunks(c: Comparison) -> Iterator[str]:
    """:func:`comparison` as text, one benchmark per line, produced piecewise: ten thousand benchmarks
    neither pass through the indenting (pure-Python) encoder nor sit in memory as one string."""
    head = json.dumps(_json_envelope(c), indent=2, allow_nan=False, ensure_ascii=False)
    yield head[:-2] + ',\n  "benchmarks": ['
    for i, b in enumerate(c.benchmarks):
        yield ("," if i else "") + "\n    " + json.dumps(_benchmark_json(b, c), allow_nan=False,
                                                         ensure_ascii=False)
    yield "\n  ]\n}\n"
