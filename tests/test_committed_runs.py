"""The committed CPU runs in results/: two back-to-back smoke runs of one commit on one 2-vCPU VM.

They are real data for the comparator's hardest case, a machine whose speed drifts between runs (the
noise between runs: :class:`bench.record.metrics.TimeRule`). Same commit, so any regression ``bench compare``
reports between them is a false alarm.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from bench.commands.compare import OutputOptions, run
from bench.judge.verdicts import CompareSettings, Status, compare_runs, noise_floor
from bench.record.metrics import METRICS
from bench.record.results import load_results

RESULTS = Path(__file__).resolve().parent.parent / "results"
BASE, RERUN = RESULTS / "cpu-smoke-baseline.json", RESULTS / "cpu-smoke-rerun.json"
STEP_PHASES = ("forward", "backward", "optimizer", "inference")


def _compare(tmp_path: Path, head: dict | None = None, **options) -> tuple[int, str]:
    head_path = RERUN
    if head is not None:
        head_path = tmp_path / "head.json"
        head_path.write_text(json.dumps(head))
    out = io.StringIO()
    code = run(BASE, head_path, CompareSettings(**options), OutputOptions(), Console(file=out, width=250))
    return code, out.getvalue()


def _scaled(case: str, factor: float) -> dict:
    """The rerun with one case's raw timing samples (and so its medians) multiplied by ``factor``."""
    data = copy.deepcopy(json.loads(RERUN.read_text()))
    bench = next(b for b in data["benchmarks"] if b["name"] == f"test_step[{case}]")
    record = bench["extra_info"]
    for phase in STEP_PHASES:
        record[f"samples_{phase}_s"] = [s * factor for s in record[f"samples_{phase}_s"]]
        record[f"time_{phase}_s"] *= factor
    return data


def test_committed_runs_are_complete_and_of_one_commit() -> None:
    base, rerun = load_results(BASE), load_results(RERUN)
    assert base.commit == rerun.commit
    for r in (base, rerun):
        assert len(r.benchmarks) == 64 and all(b.ok for b in r.benchmarks.values())
        assert r.env.profile == "smoke" and r.env.device == "cpu"


def test_back_to_back_runs_compare_with_exit_0(tmp_path: Path) -> None:
    code, out = _compare(tmp_path)
    assert code == 0, out
    assert "time noise between these runs" in out  # and it says why times are not gated here


def test_the_same_pair_fails_without_the_noise_floor(tmp_path: Path) -> None:
    """What the floor is for: the rounds-only rule calls this same-commit pair a regression."""
    code, _ = _compare(tmp_path, noise_z=0)
    assert code == 1


def test_params_and_accuracy_are_identical_between_the_runs() -> None:
    c = compare_runs(load_results(BASE), load_results(RERUN))
    assert c.exact_accuracy
    for b in c.benchmarks:
        for d in b.metrics:
            if d.key.startswith(("params_", "macs_", "accuracy_")):
                assert d.verdict == "unchanged", (b.name, d)


def test_changed_parameter_count_exits_1(tmp_path: Path) -> None:
    data = json.loads(RERUN.read_text())
    bench = next(b for b in data["benchmarks"] if b["name"] == "test_step[dogbreed_cnn]")
    bench["extra_info"]["params_total"] += 1
    code, out = _compare(tmp_path, data)
    assert code == 1 and "test_step[dogbreed_cnn] (params_total)" in out, out


def test_a_quarter_slower_is_flagged_not_passed_silently(tmp_path: Path) -> None:
    """On this machine a 1.25× step is within the noise: it cannot gate, but it is listed as
    inconclusive with the floor that hides it, never as unchanged."""
    code, out = _compare(tmp_path, _scaled("dogbreed_cnn", 1.25))
    assert code == 0
    c = compare_runs(load_results(BASE), load_results(tmp_path / "head.json"))
    case = next(b for b in c.benchmarks if b.name == "test_step[dogbreed_cnn]")
    assert case.status is Status.INCONCLUSIVE
    assert {d.key for d in case.metrics if d.verdict == "inconclusive"} >= {"time_forward_s", "time_backward_s"}
    assert "within the noise between these runs" in out


@pytest.mark.parametrize("phase", ["forward", "backward"])
def test_a_slowdown_beyond_the_noise_exits_1_naming_case_and_metric(tmp_path: Path, phase: str) -> None:
    c = compare_runs(load_results(BASE), load_results(RERUN))
    metric = METRICS[f"time_{phase}_s"]
    floor = noise_floor(metric, c.noise)
    pair = next(b for b in c.benchmarks if b.name == "test_step[dogbreed_cnn]")
    ratio = next(d.head / d.base for d in pair.metrics if d.key == metric.key)
    factor = (1 + floor) / ratio * 1.3  # 30 % beyond what the noise explains
    code, out = _compare(tmp_path, _scaled("dogbreed_cnn", factor))
    assert code == 1, out
    assert "test_step[dogbreed_cnn] (" in out and metric.key in out.split("REGRESSION")[-1]
