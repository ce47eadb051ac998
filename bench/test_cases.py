"""The benchmarks: ``pytest bench/ --benchmark-json=out.json`` measures every case twice.

* ``test_step[CASE]`` — one training step under the case's regime and the run's modes: pytest-benchmark's
  stats are the whole step, timed without synchronisation between its phases; ``extra_info`` holds the
  same whole-step samples, forward/backward/optimizer/inference medians and raw samples (timed phase by
  phase in a second step of each round), peaks, and the modes and numerics it ran under; with
  ``--bench-modules``, the per-module breakdown (bench/modules.py), measured after everything else.
* ``test_train[CASE]`` — fixed-budget training on the chosen dataset, under each seed of ``--bench-seeds``:
  pytest-benchmark's stats are the seconds per epoch (the cost report 000 box-plots); ``extra_info`` holds
  accuracies, losses, the per-epoch curve (with several seeds: their mean, spread and each seed's own) and
  the initial weights (``--bench-weights``; the step benchmark's cost does not depend on them, so it always
  runs on the builder's initialisation).
"""

from __future__ import annotations

import pytest


def _static_fields(archbench, case, record) -> None:
    cost = archbench.static_cost(case)
    record.params_total = cost.params_total
    record.params_trainable = cost.params_trainable
    record.macs_forward = cost.macs_forward
    record.unsupported_ops = dict(cost.unsupported_ops)


@pytest.mark.archbench_kind("step")
def test_step(case, archbench, benchmark, request) -> None:
    from bench.harness import StepBenchmark

    profile = archbench.profile
    with archbench.recording(request, case, "step", benchmark) as record:
        input_size = profile.input_size(case.input_size)
        record.batch_size, record.input_size, record.num_classes = profile.batch_size, input_size, case.num_classes
        _static_fields(archbench, case, record)
        run = StepBenchmark(case, archbench.device, profile.batch_size, input_size, seed=archbench.seed,
                            modes=archbench.modes)
        try:
            run.warmup(profile.warmup_rounds, profile.warmup_min_s)
            run.snapshot("before")
            record.update(run.record_fields())
            # Each round is a whole step (what pytest-benchmark times) and a phased one, untimed by it: the
            # phased step comes before the whole one in even rounds and after it in odd ones.
            index = -1

            def before() -> None:
                nonlocal index
                index += 1
                if index % 2 == 0:
                    run.train_step()

            def whole() -> None:
                archbench.maybe_inject(case)
                run.whole_step()

            def after() -> None:
                if index % 2 == 1:
                    run.train_step()

            # Fields are filled after each stage, so a later failure never loses what was measured; a key
            # that is not a Record field raises (Record.update) instead of hiding a typo.
            benchmark.pedantic(whole, setup=before, teardown=after, rounds=profile.rounds, iterations=1)
            run.snapshot("after")
            record.update(run.record_fields())
            run.run_inference(profile.rounds, profile.warmup_rounds)
            record.update(run.record_fields())
            run.measure_memory()
            record.update(run.record_fields())
            run.measure_efficiency()
            record.update(run.record_fields())
            run.measure_energy(profile.energy_min_s, profile.energy_min_rounds)
            record.update(run.record_fields())
            if archbench.modules_depth is not None:
                # --bench-modules: its own rounds after everything else, so that a failing breakdown is
                # the case's status and every field above is already in the record
                archbench.maybe_inject(case, "modules")
                run.measure_modules(archbench.modules_depth, archbench.modules_rounds)
                record.update(run.record_fields())
        finally:
            run.close()
            archbench.device.release_cached_memory()


@pytest.mark.archbench_kind("train")
def test_train(case, archbench, benchmark, request) -> None:
    from bench.harness import telemetry_fields
    from bench.train import SeededTraining, Trainer

    profile = archbench.profile
    with archbench.recording(request, case, "train", benchmark) as record:
        splits = archbench.splits(profile.train_input_size(case.input_size), case.in_channels)
        record.batch_size, record.input_size = profile.train_batch_size, splits.image_size
        _static_fields(archbench, case, record)
        record.weights = archbench.weights.identity(case)  # said even if loading them fails
        # One trainer per seed, on the same data; every seed's epochs are rounds of this benchmark.
        training = SeededTraining(
            lambda seed: Trainer(case, splits, profile, seed=seed, device=archbench.device.torch_device,
                                 modes=archbench.modes, weights=archbench.weights),
            archbench.seeds, profile.train_epochs,
        )
        try:
            def epoch() -> None:
                archbench.maybe_inject(case)
                training.run_epoch()

            before = archbench.device.telemetry()
            # setup: each seed's model is built before its first timed epoch, not inside it
            benchmark.pedantic(epoch, setup=training.prepare, rounds=training.rounds, iterations=1)
            record.update(telemetry_fields(before, archbench.device.telemetry()))
            record.update(training.result())
            record.set_samples("epoch", record.samples_epoch_s or [])
        finally:
            training.close()
            archbench.device.release_cached_memory()
