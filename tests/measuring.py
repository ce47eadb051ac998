"""Helpers for tests that measure for real: a session without the registry's checks, and the fields a
step benchmark's record derives."""

from __future__ import annotations

from typing import Any

from bench.measure.devices import CpuDevice, Device
from bench.measure.harness import StepBenchmark
from bench.measure.session import Session
from bench.measure.weights import WeightsLoader
from bench.record.derive import step_fields
from bench.record.options import RunOptions
from bench.record.profiles import get_profile
from bench.record.schema import Record


def session(options: RunOptions | None = None, *, device: Device | None = None, profile: str = "smoke",
            **overrides: Any) -> Session:
    """A session on ``device`` (the CPU, one thread) for cases the registry need not know."""
    return Session(options or RunOptions(), device or CpuDevice(threads=1), get_profile(profile).override(**overrides),
                   WeightsLoader())


def fields(run: StepBenchmark) -> dict[str, Any]:
    """``run``'s record fields with what derives from them (medians, throughputs, efficiency), as the
    session assembles a record."""
    record = Record(case=run.case.name, suite=run.case.suite, kind="step", profile="smoke", device=run.device.kind,
                    batch_size=run.batch_size)
    record.update(run.record_fields())
    record.update(step_fields(record))
    return record.to_extra_info()
