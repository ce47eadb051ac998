"""A run in which a case failed stays readable by pytest-benchmark's own tools, and by archbench's.

pytest-benchmark's readers refuse a whole file over one ``"stats": null``; failed cases therefore go under
``archbench_failed`` (:func:`bench.record.results.attach_failed`), which only archbench reads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from results_factory import benchmark_json, failed_record, results_json, standard_run, write_json

from bench.commands.merge import MergeOptions
from bench.commands.merge import run as merge_run
from bench.record.merge import merge_results
from bench.record.results import FAILED_KEY, attach_failed, load_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pytest bench/`` on two small cases, one forced to fail (a few seconds)."""
    out = tmp_path_factory.mktemp("failed") / "out.json"
    cmd = [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q", f"--benchmark-json={out}",
           "--bench-case", "dogbreed_cnn", "--bench-case", "dogbreed_dsc", "--bench-fail", "dogbreed_dsc",
           "--bench-kind", "step", "--bench-rounds", "2", "--bench-threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the failing case fails the pytest run
    return out


def _pytest_benchmark_compare(*files: Path) -> str:
    exe = Path(sys.executable).with_name("pytest-benchmark")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pytest_benchmark.cli"]
    proc = subprocess.run([*cmd, "compare", *map(str, files)], capture_output=True, text=True, timeout=120,
                          check=False)
    return proc.stdout + proc.stderr


def test_failed_case_is_kept_out_of_benchmarks(failed_run: Path) -> None:
    data = json.loads(failed_run.read_text())
    assert [b["name"] for b in data["benchmarks"]] == ["test_step[dogbreed_cnn]"]
    assert all(b["stats"] is not None for b in data["benchmarks"])
    (failed,) = data[FAILED_KEY]
    assert failed["name"] == "test_step[dogbreed_dsc]" and failed["stats"] is None
    assert failed["extra_info"]["status"] == "error" and "injected failure" in failed["extra_info"]["error"]


def test_pytest_benchmark_compare_reads_the_file(failed_run: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.json"  # pytest-benchmark cannot load one file twice in one call
    shutil.copy(failed_run, other)
    out = _pytest_benchmark_compare(failed_run, other)
    assert "Failed to load" not in out, out
    assert out.count("test_step[dogbreed_cnn]") == 2, out


def test_the_old_layout_is_what_pytest_benchmark_refuses(failed_run: Path, tmp_path: Path) -> None:
    """The check above can fail: with the failed case under ``benchmarks`` pytest-benchmark gives up."""
    data = json.loads(failed_run.read_text())
    data["benchmarks"] += data.pop(FAILED_KEY)
    a, b = write_json(tmp_path / "a.json", data), write_json(tmp_path / "b.json", data)
    assert "Failed to load" in _pytest_benchmark_compare(a, b)


def test_archbench_sees_every_case_with_its_status(failed_run: Path) -> None:
    results = load_results(failed_run)
    assert {n: b.record.status for n, b in results.benchmarks.items()} == {
        "test_step[dogbreed_cnn]": "ok", "test_step[dogbreed_dsc]": "error",
    }
    assert FAILED_KEY not in results.envelope


def test_attach_failed_moves_kept_cases_that_did_not_measure_cleanly() -> None:
    ok = benchmark_json(standard_run()[0])
    # pytest-benchmark keeps a case whose function returned: an interrupted or diverged case may come
    # with stats that measure nothing
    interrupted = benchmark_json(standard_run()[2])
    interrupted["extra_info"]["status"] = "interrupted"
    dropped = benchmark_json(failed_record("gone"))
    assert dropped["stats"] is None
    output = {"machine_info": {}, "benchmarks": [ok, interrupted]}
    attach_failed(output, [dropped])
    assert output["benchmarks"] == [ok]
    assert output[FAILED_KEY] == [interrupted, dropped]
    clean = {"benchmarks": [ok]}
    attach_failed(clean, [])
    assert clean == {"benchmarks": [ok]}  # no key when nothing failed


def test_a_file_of_failures_only_is_still_a_results_file(tmp_path: Path) -> None:
    data = results_json([failed_record("a"), failed_record("b")])
    attach_failed(data, [])
    assert data["benchmarks"] == [] and len(data[FAILED_KEY]) == 2
    assert set(load_results(write_json(tmp_path / "f.json", data)).benchmarks) == {"test_step[a]", "test_step[b]"}


def test_duplicate_between_the_two_lists_is_refused(tmp_path: Path) -> None:
    data = results_json(standard_run())
    data[FAILED_KEY] = [benchmark_json(failed_record("dogbreed_cnn"))]
    from bench.record.results import ResultsError

    with pytest.raises(ResultsError, match=r"duplicate name \(entries 0 and archbench_failed\[0\]\)"):
        load_results(write_json(tmp_path / "d.json", data))


def test_merge_keeps_failed_cases_where_pytest_benchmark_does_not_look(tmp_path: Path) -> None:
    first = results_json(standard_run()[:4])
    second = results_json([failed_record("broken")])
    attach_failed(second, [])
    a, b = write_json(tmp_path / "a.json", first), write_json(tmp_path / "b.json", second)
    merged = merge_results([load_results(a), load_results(b)])
    assert [x["name"] for x in merged.data[FAILED_KEY]] == ["test_step[broken]"]
    assert all(x["stats"] is not None for x in merged.data["benchmarks"])
    out = tmp_path / "m.json"
    assert merge_run(MergeOptions((a, b), out)) == 0
    assert load_results(out).benchmarks["test_step[broken]"].record.status == "oom"
    assert json.loads(out.read_text())[FAILED_KEY][0]["name"] == "test_step[broken]"
