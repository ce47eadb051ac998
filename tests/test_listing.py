"""`bench list`: the table and the JSON a script would parse."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from bench import commands as cli
from bench.measure.cases import case_cost, select
from bench.render.cases import cases_table


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_json_is_parseable_and_complete(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "list", "dogbreed_*", "mobilenet_v1_025_*", "--format", "json")
    assert code == 0
    rows = {r["case"]: r for r in json.loads(out)}
    assert set(rows) == {"dogbreed_cnn", "dogbreed_dsc", "dogbreed_deformable", "mobilenet_v1_025_224"}
    for row in rows.values():
        for key in ("case", "suite", "params_total", "params_trainable", "macs_forward", "unsupported_ops",
                    "input_size", "num_classes"):
            assert key in row, key
        assert row["unsupported_ops"] == {}
        assert isinstance(row["macs_forward"], int) and row["macs_forward"] > 0
    assert rows["dogbreed_cnn"]["params_total"] == 585_383
    assert rows["dogbreed_cnn"]["num_classes"] == 7 and rows["dogbreed_cnn"]["input_size"] == 224
    # the deformable twin costs more than the plain one, not the same (fvcore alone would say equal)
    assert rows["dogbreed_deformable"]["macs_forward"] > rows["dogbreed_cnn"]["macs_forward"]


def test_list_suite_filter(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "list", "--suite", "dynconv", "--format", "json")
    assert code == 0
    assert {r["suite"] for r in json.loads(out)} == {"dynconv"}


def test_list_any_resnet50_dcn_config_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "list", "resnet50_dcn_1111", "--format", "json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["case"] == "resnet50_dcn_1111" and row["params_total"] > 23_528_522


def test_list_errors_name_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "list", "--suite", "nope")
    assert code == 2 and "nope" in err
    code, _, err = run_cli(capsys, "list", "zzz*")
    assert code == 2 and "no case matches" in err


def test_table_renders_units_and_report_numbers() -> None:
    rows = [case_cost(c) for c in select(["dogbreed_dsc"], [])]
    console = Console(file=io.StringIO(), width=250)
    console.print(cases_table(rows).to_rich())
    text = console.file.getvalue()
    assert "params (M)" in text and "MACs (G)" in text
    assert "dogbreed_dsc" in text and "0.075" in text and "74,663" in text
