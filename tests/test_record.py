"""bench.record.schema: the record type refuses fields it does not have, and still copies, pickles and parses."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import typing

import pytest

from bench.record.schema import PHASES, STATUSES, Record, RecordError, Status


def make() -> Record:
    record = Record(case="dogbreed_cnn", suite="dogbreed", kind="step", profile="smoke", device="cpu",
                    params_total=585_383, unsupported_ops={"aten::foo": 2})
    record.set_samples("forward", [0.3, 0.1, 0.2])
    return record


def test_setting_a_field_that_does_not_exist_fails() -> None:
    record = make()
    with pytest.raises(AttributeError):
        record.time_forwrd_s = 0.1  # type: ignore[attr-defined]  # the typo this guards against
    with pytest.raises(AttributeError):
        phase = "epochs"
        setattr(record, f"time_{phase}_s", 0.1)  # computed names, as harness and trainer set them
    assert not hasattr(record, "time_forwrd_s")
    record.time_forward_s = 0.2  # real fields stay settable
    assert record.time_forward_s == 0.2


def test_update_refuses_unknown_fields_and_sets_none_of_them() -> None:
    record = make()
    with pytest.raises(AttributeError, match="'loss_tran'"):
        record.update({"accuracy_test": 0.5, "loss_tran": 1.0})
    assert record.accuracy_test is None
    record.update({"accuracy_test": 0.5, "loss_train": 1.0})
    assert (record.accuracy_test, record.loss_train) == (0.5, 1.0)


def test_set_samples_derives_the_median_and_refuses_unknown_names() -> None:
    record = make()
    assert record.samples_forward_s == [0.3, 0.1, 0.2] and record.time_forward_s == 0.2
    for name in (*PHASES, "epoch"):
        record.set_samples(name, [1.0, 3.0])
        assert getattr(record, f"time_{name}_s") == 2.0
    record.set_samples("epoch", [])
    assert record.time_epoch_s is None
    with pytest.raises(ValueError, match="'forwards'"):
        record.set_samples("forwards", [1.0])


def test_record_copies_pickles_and_round_trips() -> None:
    record = make()
    record.pairing = {"id": "abc", "side": "base", "order": "ABBA"}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(record, protocol)) == record, protocol
    assert copy.deepcopy(record) == record
    changed = dataclasses.replace(record, status="oom")
    assert changed.status == "oom" and record.status == "ok" and changed.params_total == 585_383
    data = dataclasses.asdict(record)
    assert data["unsupported_ops"] == {"aten::foo": 2} and data["pairing"]["side"] == "base"
    assert Record.from_extra_info(record.to_extra_info()) == record


def test_statuses_are_the_status_literal() -> None:
    assert STATUSES == typing.get_args(Status) == ("ok", "oom", "error", "diverged", "interrupted")
    data = make().to_extra_info()
    with pytest.raises(RecordError, match="'crashed'"):
        Record.from_extra_info({**data, "status": "crashed"})
