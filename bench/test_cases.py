"""The benchmarks: ``pytest bench/ --benchmark-json=out.json`` measures every case twice.

* ``test_step[CASE]`` — one training step under the case's regime and the run's modes: pytest-benchmark's
  stats are the whole step, timed without synchronisation between its phases; ``extra_info`` holds the
  same whole-step samples, forward/backward/optimizer/inference medians and raw samples (timed phase by
  phase in the same rounds), peaks, and the modes and numerics it ran under; with ``--bench-modules``,
  the per-module breakdown (bench/measure/modules.py).
* ``test_train[CASE]`` — fixed-budget training on the chosen dataset, under each seed of ``--bench-seeds``:
  pytest-benchmark's stats are the seconds per epoch (the cost report 000 box-plots); ``extra_info`` holds
  accuracies, losses, the per-epoch curve (with several seeds: their mean, spread and each seed's own) and
  the initial weights (``--bench-weights``; the step benchmark's cost does not depend on them, so it always
  runs on the builder's initialisation).

Both are thin: the stages, their order and the record are the measurement session's
(:mod:`bench.measure.session`), driven here through the plugin's :class:`bench.plugin.ArchbenchSession`.
"""

from __future__ import annotations

import pytest


@pytest.mark.archbench_kind("step")
def test_step(case, archbench, benchmark, request) -> None:
    archbench.step(case, benchmark, request)


@pytest.mark.archbench_kind("train")
def test_train(case, archbench, benchmark, request) -> None:
    archbench.train(case, benchmark, request)
