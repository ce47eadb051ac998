"""One measurement session for every driver: ``pytest bench/``, a ``bench ab`` worker and ``bench profile``
measure one case through the same stages, and their records agree field for field, times aside."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from measuring import session

from bench import commands as cli
from bench.measure.ab import paired_step
from bench.measure.worker import Worker, serve
from bench.record.options import FailSpec, RunOptions
from bench.record.schema import Record
from suites.case import Case, Regime, Reported, Stage

ROOT = Path(__file__).resolve().parents[1]
CASE, ROUNDS, DEPTH = "dogbreed_dsc", 3, 1

#: Fields that are times (or rates and shares of time), or the driver's own: they differ between any two
#: measurements. Everything else is what was measured and under what, and must be the same.
TIMES = ("time_", "samples_", "throughput_", "tflops_", "mfu_", "energy_", "power_")
TIMED = {"first_step_s", "compile_time_s", "modules_coverage", "modules_coverage_per_round",
         "modules_phase_samples_s", "modules_overhead", "pairing", "gpu_before", "gpu_after"}
MODULE_TIMES = ("time_", "samples_", "share_")


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in record.items() if not k.startswith(TIMES) and k not in TIMED}
    out["modules"] = [{k: v for k, v in m.items() if not k.startswith(MODULE_TIMES)} for m in record["modules"]]
    return out


def through_pytest(tmp: Path) -> dict[str, Any]:
    out = tmp / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q", f"--benchmark-json={out}",
         f"--bench-case={CASE}", "--bench-kind=step", f"--bench-rounds={ROUNDS}", "--bench-threads=1",
         "--bench-modules", f"--bench-modules-depth={DEPTH}", "--bench-profile=smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())["benchmarks"][0]["extra_info"]


def through_a_worker() -> dict[str, Any]:
    """A bench ab worker, in this process, driven request by request as the controller drives it."""
    options = RunOptions(cases=(CASE,), kind="step", rounds=ROUNDS, threads=1, modules=True, modules_depth=DEPTH,
                         profile="smoke")
    requests = [{"op": "setup", "options": options.to_wire()}, {"op": "step_prepare", "case": CASE, "static": True}]
    requests += [{"op": "step_round", "case": CASE}] * ROUNDS + [{"op": "modules_round", "case": CASE}] * ROUNDS
    requests += [{"op": "modules_static", "case": CASE}, {"op": "step_finish", "case": CASE}]
    replies = io.StringIO()
    serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), replies, Worker())
    answers = [json.loads(line) for line in replies.getvalue().splitlines()]
    assert all(a["ok"] for a in answers), [a for a in answers if not a["ok"]]
    rounds = answers[2:2 + ROUNDS]
    modules = answers[2 + ROUNDS:2 + 2 * ROUNDS]
    static = answers[2 + 2 * ROUNDS]["static"]
    return paired_step(answers[-1], rounds, static, modules)["extra_info"]


def through_profile(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert cli.main(["profile", CASE, "--rounds", str(ROUNDS), "--depth", str(DEPTH), "--threads", "1",
                     "--profile", "smoke", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_the_three_drivers_make_the_same_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = {"pytest bench/": through_pytest(tmp_path), "bench ab worker": through_a_worker(),
               "bench profile": through_profile(capsys)}
    for record in records.values():
        Record.from_extra_info(record)  # medians agree with their samples, every field parses
        assert record["status"] == "ok" and len(record["samples_forward_s"]) == ROUNDS
        assert len(record["modules_phase_samples_s"]["backward"]) == ROUNDS
    views = {driver: comparable(record) for driver, record in records.items()}
    reference = views["pytest bench/"]
    assert reference["params_total"] == 74_663 and reference["mem_forward_bytes"] > 0
    assert reference["modules"] and reference["peak_source"]
    for driver, view in views.items():
        assert set(view) == set(reference), driver
        differing = {k: (reference[k], view[k]) for k in reference if view[k] != reference[k]}
        assert differing == {}, driver


# -- the stages, in process --------------------------------------------------------------------------


def _tiny(num_classes: int, image_size: int) -> Any:
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


TINY = Case(name="tiny", suite="dogbreed", builder=_tiny, input_size=16, in_channels=3, num_classes=3,
            regime=Regime(loss="cross_entropy", optimizer="sgd", stages=(Stage(1.0, 1e-2),)),
            reported=Reported(source="test"))


def test_a_failure_keeps_what_was_measured_and_goes_to_the_store_and_the_partial_file(tmp_path: Path) -> None:
    partial = tmp_path / "partial.jsonl"
    s = session(RunOptions(fail=(FailSpec("tiny", "oom"),), partial=str(partial)), rounds=2)
    stored: list[Record] = []
    record = s.measure_step(TINY, stored.append)
    assert record.status == "oom" and "injected out-of-memory" in (record.error or "")
    assert record.params_total is not None and record.first_step_s is not None  # the stages before it
    assert stored == [record]
    line = json.loads(partial.read_text())
    assert line["name"] == "test_step[tiny]" and line["extra_info"]["status"] == "oom"


def test_a_failing_breakdown_keeps_the_step_record(tmp_path: Path) -> None:
    s = session(RunOptions(modules=True, modules_depth=1, fail=(FailSpec("tiny", "modules"),)), rounds=2)
    record = s.measure_step(TINY)
    assert record.status == "error" and (record.error or "").startswith("modules: InjectedFailure")
    assert record.samples_forward_s is not None and len(record.samples_forward_s) == 2
    assert record.mem_step_peak_bytes is not None and record.modules is None  # finish ran; no half breakdown


def test_an_interrupt_is_stored_and_goes_on_up() -> None:
    s = session(RunOptions(fail=(FailSpec("tiny", "interrupt"),)), rounds=2)
    stored: list[Record] = []
    with pytest.raises(KeyboardInterrupt):
        s.measure_step(TINY, stored.append)
    assert [r.status for r in stored] == ["interrupted"]


def test_train_runs_every_seed_and_derives_the_mean() -> None:
    from bench.measure.data import embedded

    s = session(RunOptions(seeds=(0, 3)), train_epochs=1, train_samples=32, train_batch_size=8)
    s._splits[("embedded", None, s.profile.train_input_size(TINY.input_size), 3)] = embedded(
        s.profile.train_input_size(TINY.input_size), 3, samples=32, seed=0)
    record = s.measure_train(TINY)
    assert record.status == "ok" and record.seeds == [0, 3] and len(record.samples_epoch_s or []) == 2
    assert record.per_seed is not None and [p["seed"] for p in record.per_seed] == [0, 3]
