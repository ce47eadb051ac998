"""The end-of-run summary: one row per case from its step and train records, with flags."""

from __future__ import annotations

import io

from results_factory import failed_record, step_record, train_record
from rich.console import Console

from bench.record.results import group_cases
from bench.render.summary import summary_table


def _render(table) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(table.to_rich())
    return out.getvalue()


def test_step_and_train_records_of_a_case_share_a_row() -> None:
    step = step_record("dogbreed_cnn", forward_s=0.002)
    train = train_record("dogbreed_cnn", accuracy=0.75)
    other = step_record("dogbreed_dsc", forward_s=0.004)
    rows = list(group_cases([step, other, train]).values())
    assert [r.case for r in rows] == ["dogbreed_cnn", "dogbreed_dsc"]
    assert rows[0].step is step and rows[0].train is train and rows[1].train is None
    assert rows[0].value("accuracy_test") == 0.75 and rows[0].value("time_forward_s") == step.time_forward_s
    text = _render(summary_table([step, other, train]))
    assert "75.00" in text and "2 cases" in text


def test_failures_and_frozen_random_backbones_are_flagged() -> None:
    frozen = train_record("flowers_resnet18_frozen", accuracy=0.15)
    frozen.params_trainable = 52_326
    broken = failed_record("dogbreed_dsc", "step", status="oom")
    rows = group_cases([frozen, broken, step_record("dogbreed_cnn")])
    assert rows["flowers_resnet18_frozen"].flags() == "frozen backbone, random weights"
    assert rows["dogbreed_dsc"].flags() == "step: oom"
    assert rows["dogbreed_cnn"].flags() == ""
    assert "1 with a failed record" in _render(summary_table([frozen, broken]))


def test_accuracy_shows_the_seed_spread_and_loaded_weights_clear_the_flag() -> None:
    train = train_record("dogbreed_cnn", accuracy=0.6)
    train.accuracy_test_spread = 0.0512
    assert "60.00 ± 5.1" in _render(summary_table([train]))
    frozen = train_record("flowers_resnet18_frozen", accuracy=0.8)
    frozen.params_trainable = 52_326
    frozen.weights = "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    assert group_cases([frozen])[frozen.case].flags() == ""
