"""Loading and validating results files (bench.record.results): every unusable input exits 2 and says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from results_factory import (
    benchmark_json,
    failed_record,
    results_json,
    standard_run,
    step_record,
    train_record,
    write_json,
    write_results,
)

from bench.record.results import EXIT_UNUSABLE, ResultsError, load_results, parse_results


def _error(path: Path) -> ResultsError:
    with pytest.raises(ResultsError) as info:
        load_results(path)
    assert info.value.exit_code == EXIT_UNUSABLE == 2
    assert str(path) in str(info.value), "the message names the file"
    return info.value


def test_valid_file_loads_every_benchmark_with_record_and_stats(tmp_path: Path) -> None:
    records = standard_run()
    res = load_results(write_results(tmp_path / "run.json", records))
    assert list(res.benchmarks) == [f"test_{r.kind}[{r.case}]" for r in records]
    bench = res.benchmarks["test_step[dogbreed_cnn]"]
    assert bench.record.params_total == 585_383
    assert bench.stats is not None and bench.stats.rounds == 7 and bench.stats.data is not None
    assert res.env.device == "cpu" and res.env.profile == "smoke" and res.env.threads == 2
    assert res.devices == {"cpu"} and res.profiles == {"smoke"}
    assert res.commit == "0123456789abcdef"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("")
    assert "empty" in str(_error(path))


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.json"
    path.write_text("\n  \n")
    assert "empty" in str(_error(path))


def test_truncated_file(tmp_path: Path) -> None:
    text = json.dumps(results_json(standard_run()), indent=4)
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    message = str(_error(path))
    assert "not valid JSON" in message and "truncated" in message and "line" in message


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert "not UTF-8" in str(_error(path))


@pytest.mark.parametrize(
    "data, expected",
    [
        ([1, 2, 3], "top level is a JSON array"),
        ({"name": "archbench", "version": "1.0"}, "no 'machine_info' or 'benchmarks' key"),
        ({"machine_info": {}, "benchmarks": {}}, "'benchmarks' is not a list"),
        ({"machine_info": [], "benchmarks": []}, "'machine_info' is not an object"),
    ],
)
def test_json_that_is_not_pytest_benchmark_output(tmp_path: Path, data: object, expected: str) -> None:
    message = str(_error(write_json(tmp_path / "other.json", data)))
    assert "not a pytest-benchmark file" in message and expected in message


def test_pytest_benchmark_file_from_another_project(tmp_path: Path) -> None:
    data = results_json(standard_run())
    del data["machine_info"]["archbench"]
    for b in data["benchmarks"]:
        b["extra_info"] = {}
    assert "'archbench' block" in str(_error(write_json(tmp_path / "foreign.json", data)))


def test_benchmark_without_archbench_record(tmp_path: Path) -> None:
    data = results_json(standard_run())
    data["benchmarks"][1]["extra_info"] = {"note": "hand-written"}
    message = str(_error(write_json(tmp_path / "x.json", data)))
    assert "test_train[dogbreed_cnn]" in message and "not an archbench record" in message


def test_no_benchmarks(tmp_path: Path) -> None:
    data = results_json([])
    assert "no benchmarks" in str(_error(write_json(tmp_path / "none.json", data)))


def test_duplicate_benchmark_names(tmp_path: Path) -> None:
    record = step_record("dogbreed_cnn")
    data = results_json([record, record])
    message = str(_error(write_json(tmp_path / "dup.json", data)))
    assert "test_step[dogbreed_cnn]" in message and "duplicate" in message


def test_nan_in_samples_names_file_benchmark_and_field(tmp_path: Path) -> None:
    data = results_json(standard_run())
    data["benchmarks"][0]["extra_info"]["samples_backward_s"][2] = float("nan")
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(data))  # Python writes NaN, and its parser accepts it back
    assert "NaN" in path.read_text()
    message = str(_error(path))
    assert "test_step[dogbreed_cnn]" in message and "extra_info.samples_backward_s[2]" in message
    assert "nan" in message


@pytest.mark.parametrize(
    "where, key",
    [("extra_info", "accuracy_test"), ("extra_info", "params_total"), ("stats", "median")],
)
def test_infinity_and_nan_in_any_numeric_field(tmp_path: Path, where: str, key: str) -> None:
    data = results_json(standard_run())
    data["benchmarks"][1][where][key] = float("inf")
    message = str(_error(write_json(tmp_path / "inf.json", data)))
    assert "test_train[dogbreed_cnn]" in message and f"{where}.{key}" in message and "inf" in message


def test_wrongly_typed_metric_names_field(tmp_path: Path) -> None:
    data = results_json(standard_run())
    data["benchmarks"][0]["extra_info"]["macs_forward"] = "1.1G"
    message = str(_error(write_json(tmp_path / "typed.json", data)))
    assert "test_step[dogbreed_cnn]" in message and "macs_forward" in message


@pytest.mark.parametrize(
    "index, where, key, value, expected",
    [
        (0, "extra_info", "time_forward_s", -0.002, "impossible"),
        (0, "extra_info", "samples_forward_s", [0.002, -0.001, 0.002], "impossible for a duration"),
        (0, "extra_info", "mem_backward_bytes", -1, "impossible"),
        (0, "extra_info", "params_total", -5, "impossible"),
        (1, "extra_info", "accuracy_test", 1.5, "fraction"),
        (1, "extra_info", "accuracy_test", -0.1, "fraction"),
        (0, "extra_info", "batch_size", "two", "expected a whole number"),
        (0, "extra_info", "batch_size", 0, "at least 1"),
        (0, "extra_info", "seed", 1.5, "expected a whole number"),
        (0, "stats", "min", -0.001, "impossible for a time"),
        (0, "stats", "data", [0.01, -0.02], "impossible for a time"),
    ],
)
def test_impossible_values_are_refused_naming_file_benchmark_and_field(
    tmp_path: Path, index: int, where: str, key: str, value: object, expected: str
) -> None:
    data = results_json(standard_run())
    data["benchmarks"][index][where][key] = value
    if key.startswith("samples_"):  # keep the median in step with its samples, so that only the sign is wrong
        data["benchmarks"][index][where]["time_forward_s"] = sorted(value)[1]  # type: ignore[arg-type]
    message = str(_error(write_json(tmp_path / "impossible.json", data)))
    name = data["benchmarks"][index]["name"]
    assert name in message and key in message and expected in message, message


@pytest.mark.parametrize("key, value", [("time_forward_s", "0.004"), ("samples_forward_s", [0.004, "x"])])
def test_a_string_where_a_number_belongs_names_the_field(tmp_path: Path, key: str, value: object) -> None:
    """Before the check, these reached the median check: "must be real number, not str", no field named."""
    data = results_json(standard_run())
    data["benchmarks"][0]["extra_info"][key] = value
    message = str(_error(write_json(tmp_path / "typed.json", data)))
    assert "test_step[dogbreed_cnn]" in message and repr(key) in message and "expected" in message, message


def test_median_disagreeing_with_samples_is_refused(tmp_path: Path) -> None:
    data = results_json(standard_run())
    data["benchmarks"][0]["extra_info"]["time_forward_s"] *= 2
    message = str(_error(write_json(tmp_path / "median.json", data)))
    assert "time_forward_s" in message and "test_step[dogbreed_cnn]" in message


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    assert "no such file" in str(_error(tmp_path / "absent.json"))
    assert "directory" in str(_error(tmp_path))


def test_failed_case_loads_with_null_stats(tmp_path: Path) -> None:
    records = [step_record("dogbreed_cnn"), failed_record("dogbreed_dsc", status="oom")]
    res = load_results(write_results(tmp_path / "failed.json", records))
    bench = res.benchmarks["test_step[dogbreed_dsc]"]
    assert not bench.ok and bench.stats is None and bench.record.status == "oom"


def test_diverged_case_may_carry_a_nan_loss(tmp_path: Path) -> None:
    record = train_record("dogbreed_cnn")
    record.status, record.error, record.loss_train = "diverged", "loss is nan", float("nan")
    record.curve[-1]["loss_train"] = float("nan")  # type: ignore[index]
    res = load_results(write_results(tmp_path / "diverged.json", [record]))
    assert res.benchmarks["test_train[dogbreed_cnn]"].record.status == "diverged"


def test_ok_case_with_nan_loss_is_refused(tmp_path: Path) -> None:
    record = train_record("dogbreed_cnn")
    record.loss_val = float("nan")
    assert "extra_info.loss_val" in str(_error(write_results(tmp_path / "nanloss.json", [record])))


def test_zero_rounds_stats_of_failed_case(tmp_path: Path) -> None:
    data = results_json([failed_record("dogbreed_cnn", status="error")])
    data["benchmarks"][0]["stats"] = {"rounds": 0, "data": []}
    res = parse_results(data, "inline")
    assert res.benchmarks["test_step[dogbreed_cnn]"].stats.rounds == 0  # type: ignore[union-attr]


def test_benchmark_entry_shape_matches_pytest_benchmark() -> None:
    entry = benchmark_json(step_record("dogbreed_cnn"))
    assert {"group", "name", "fullname", "params", "stats", "options", "extra_info"} <= set(entry)
    assert entry["stats"]["rounds"] == 7 and len(entry["stats"]["data"]) == 7


def test_missing_median_is_derived_from_samples(tmp_path: Path) -> None:
    data = results_json([train_record("dogbreed_cnn", epochs=3)])
    extra = data["benchmarks"][0]["extra_info"]
    extra["time_epoch_s"] = None  # a writer that stored only the raw samples
    res = parse_results(data, "inline")
    record = res.benchmarks["test_train[dogbreed_cnn]"].record
    assert record.time_epoch_s == sorted(extra["samples_epoch_s"])[1]
