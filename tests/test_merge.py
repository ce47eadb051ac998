"""bench merge: one results file from runs split across machines."""

from __future__ import annotations

import io
import json
from pathlib import Path

from results_factory import results_json, standard_run, write_json, write_results
from rich.console import Console

from bench import commands as cli
from bench.commands.merge import MergeOptions, run
from bench.judge.verdicts import CompareSettings, compare_runs
from bench.record.results import load_results


def _split(tmp_path: Path, **second_env: object) -> tuple[Path, Path]:
    records = standard_run()
    dog = [r for r in records if r.suite == "dogbreed"]
    r50 = [r for r in records if r.suite == "resnet50_dcn"]
    if "device" in second_env:
        for r in r50:
            r.device = str(second_env["device"])
    a = write_results(tmp_path / "dogbreed.json", dog, commit="aaaa")
    b = write_results(tmp_path / "resnet50.json", r50, commit="aaaa", **second_env)
    return a, b


def _merge(inputs: list[Path], output: Path, allow: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    code = run(MergeOptions(tuple(inputs), output, allow), Console(file=out, width=250))
    return code, out.getvalue()


def test_merge_joins_benchmarks_and_keeps_every_machine_info(tmp_path: Path) -> None:
    a, b = _split(tmp_path, device_name="Other CPU")
    out = tmp_path / "merged.json"
    code, text = _merge([a, b], out)
    assert code == 0 and "10 benchmarks from 2 files" in text
    merged = load_results(out)
    assert len(merged.benchmarks) == 10
    data = json.loads(out.read_text())
    assert data["machine_info"] == json.loads(a.read_text())["machine_info"]  # first is the envelope
    assert [m["file"] for m in data["merged_from"]] == [str(a), str(b)]
    assert data["merged_from"][1]["machine_info"]["archbench"]["device_name"] == "Other CPU"
    assert "differ in device_name" in text  # worth a warning, not a refusal


def test_merged_file_compares_against_a_whole_run(tmp_path: Path) -> None:
    a, b = _split(tmp_path)
    out = tmp_path / "merged.json"
    assert _merge([a, b], out)[0] == 0
    whole = write_results(tmp_path / "whole.json", standard_run(1))
    c = compare_runs(load_results(whole), load_results(out), CompareSettings())
    assert c.exit_code == 0 and len(c.benchmarks) == 10


def test_merge_of_merges_flattens_the_sources(tmp_path: Path) -> None:
    a, b = _split(tmp_path)
    first = tmp_path / "first.json"
    assert _merge([a], first)[0] == 0
    final = tmp_path / "final.json"
    assert _merge([first, b], final)[0] == 0
    assert [m["file"] for m in json.loads(final.read_text())["merged_from"]] == [str(a), str(b)]


def test_duplicate_across_inputs_exits_2_naming_both_files(tmp_path: Path) -> None:
    a, _ = _split(tmp_path)
    copy = write_json(tmp_path / "copy.json", json.loads(a.read_text()))
    out = tmp_path / "m.json"
    code, text = _merge([a, copy], out)
    assert code == 2 and "test_step[dogbreed_cnn]" in text and str(a) in text and str(copy) in text
    assert not out.exists()


def test_different_devices_exit_3_unless_allowed(tmp_path: Path) -> None:
    a, b = _split(tmp_path, device="cuda")
    out = tmp_path / "m.json"
    code, text = _merge([a, b], out)
    assert code == 3 and "device" in text and str(b) in text and not out.exists()
    code, text = _merge([a, b], out, allow=True)
    assert code == 0 and "not comparable (--allow-incomparable): device" in text
    assert load_results(out).devices == {"cpu", "cuda"}


def test_bad_input_exits_2_naming_the_file(tmp_path: Path) -> None:
    a, _ = _split(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("")
    code, text = _merge([a, bad], tmp_path / "m.json")
    assert code == 2 and str(bad) in text and "empty" in text


def test_merge_cli(tmp_path: Path) -> None:
    a, b = _split(tmp_path)
    out = tmp_path / "cli.json"
    assert cli.main(["merge", str(a), str(b), "-o", str(out)]) == 0
    assert len(load_results(out).benchmarks) == 10
    nan = results_json(standard_run())
    nan["benchmarks"][0]["stats"]["mean"] = float("nan")
    bad = write_json(tmp_path / "nan.json", nan)
    assert cli.main(["merge", str(a), str(bad), "-o", str(out)]) == 2
