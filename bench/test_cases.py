"""The benchmarks: ``pytest bench/ --benchmark-json=out.json`` measures every case twice.

* ``test_step[CASE]`` — one training step under the case's regime: pytest-benchmark's stats are the
  whole step; ``extra_info`` holds forward/backward/optimizer/inference medians, raw samples and peaks.
* ``test_train[CASE]`` — fixed-budget training on the chosen dataset: pytest-benchmark's stats are the
  seconds per epoch (the cost report 000 box-plots); ``extra_info`` holds accuracies, losses and the
  per-epoch curve.
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
        run = StepBenchmark(case, archbench.device, profile.batch_size, input_size, seed=archbench.seed)
        run.warmup(profile.warmup_rounds)

        def step() -> None:
            archbench.maybe_inject(case)
            run.train_step()

        # Fields are filled after each stage, so a later failure never loses what was measured; a key that
        # is not a Record field raises (Record.update) instead of hiding a typo.
        benchmark.pedantic(step, rounds=profile.rounds, iterations=1)
        record.update(run.record_fields())
        run.run_inference(profile.rounds, profile.warmup_rounds)
        record.update(run.record_fields())
        run.measure_memory()
        record.update(run.record_fields())
        if archbench.device.kind == "cuda":
            record.mem_device_bytes = archbench.device.device_memory_used()


@pytest.mark.archbench_kind("train")
def test_train(case, archbench, benchmark, request) -> None:
    from bench.train import Trainer

    profile = archbench.profile
    with archbench.recording(request, case, "train", benchmark) as record:
        splits = archbench.splits(profile.train_image_size, case.in_channels)
        record.batch_size, record.input_size = profile.train_batch_size, splits.image_size
        _static_fields(archbench, case, record)
        trainer = Trainer(case, splits, profile, seed=archbench.seed, device=archbench.device.torch_device)

        def epoch() -> None:
            archbench.maybe_inject(case)
            trainer.run_epoch()

        benchmark.pedantic(epoch, rounds=profile.train_epochs, iterations=1)
        record.update(trainer.result())
        record.set_samples("epoch", record.samples_epoch_s or [])
