"""Initial weights (bench/measure/weights.py, ``--bench-weights``): the per-case tables, loading from the torch
hub cache and from a state-dict file, the records, the start-of-run check and ``bench compare``.

No test downloads anything: the hub cache is a temporary TORCH_HOME, the "torchvision" files are state
dicts of torchvision's own architectures with seeded random values, written under the exact names
torchvision's weights API expects, and the download function is replaced by one that fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from rich.console import Console
from torch import Tensor, nn
from torchvision.models import ResNet18_Weights, ResNet50_Weights, WeightsEnum

from bench.commands.compare import OutputOptions, run
from bench.judge.verdicts import CompareSettings, compare_runs
from bench.measure.data import embedded
from bench.measure.train import Determinism, Trainer
from bench.measure.weights import (
    WeightsChoice,
    WeightsError,
    WeightsLoader,
    expected_path,
    fetch_command,
    map_file,
    missing_files,
    parse_choice,
    read_state_dict,
)
from bench.record.results import load_results
from bench.record.schema import Record, random_frozen_backbone
from suites.case import Case, Regime, Reported, Stage, WeightsMap
from suites.registry import get_case, registry
from tests.results_factory import results_json, train_record, write_json
from tests.test_train import PROFILE

ROOT = Path(__file__).resolve().parents[1]


class DownloadAttempted(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_download(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every test: a download raises (torch.hub's one downloader, which load_state_dict_from_url calls)."""
    calls: list[str] = []

    def refuse(url: str, dst: str, *args: object, **kwargs: object) -> None:
        calls.append(url)
        raise DownloadAttempted(f"download of {url} attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return calls


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache: TORCH_HOME in a temporary directory, no set_dir override."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "torch" / "hub"


_BUILDERS: dict[type, str] = {}


def architecture_of(member: WeightsEnum) -> str:
    """torchvision's model name whose weights enum ``member`` belongs to (``resnet18``)."""
    if not _BUILDERS:
        for name in torchvision.models.list_models(module=torchvision.models):
            try:
                _BUILDERS[torchvision.models.get_model_weights(name)] = name
            except (KeyError, ValueError):
                continue
    return _BUILDERS[type(member)]


_SOURCES: dict[str, dict[str, Tensor]] = {}


def fake_state_dict(member: WeightsEnum) -> dict[str, Tensor]:
    """A state dict with the keys and shapes of ``member``'s file (1000 ImageNet classes, 224 px), with
    seeded random values: what the real file looks like to the loader."""
    name = architecture_of(member)
    if name not in _SOURCES:
        with Determinism(1234):
            model = torchvision.models.get_model(name, weights=None)
            for key, value in model.state_dict().items():
                if key.endswith("running_var"):
                    value.uniform_(0.5, 1.5)  # a variance: positive, or BatchNorm's output is NaN
                elif value.is_floating_point():
                    value.normal_(0.0, 0.05)
        _SOURCES[name] = {k: v.clone() for k, v in model.state_dict().items()}
    return _SOURCES[name]


def write_cached(member: WeightsEnum) -> tuple[Path, dict[str, Tensor]]:
    """Write ``member``'s stand-in file where torchvision's weights API reads it."""
    path = expected_path(member)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = fake_state_dict(member)
    torch.save(state, path)
    return path, state


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def built(case: Case, num_classes: int = 5, image_size: int = 32, seed: int = 0) -> nn.Module:
    with Determinism(seed):
        return case.build(num_classes=num_classes, image_size=image_size)


# -- the tables -------------------------------------------------------------------------------------------


def test_every_suite_case_declares_its_weights() -> None:
    pretrained = {c.name: c.weights.pretrained for c in registry().values() if c.weights is not None}
    assert len(pretrained) == len(registry())
    assert {pretrained[n] for n in pretrained if n.startswith("resnet50_dcn_")} == {ResNet50_Weights.IMAGENET1K_V1}
    flowers = {n: str(m) for n, m in pretrained.items() if n.startswith("flowers_")}
    assert flowers == {
        **{n: "EfficientNet_B0_Weights.IMAGENET1K_V1" for n in
           ("flowers_efficientnet_b0_frozen", "flowers_efficientnet_b0", "flowers_efficientnet_b0_eca")},
        **{n: "ViT_B_16_Weights.IMAGENET1K_V1" for n in
           ("flowers_vit_b_16_frozen", "flowers_vit_b_16", "flowers_vit_b_16_tcel")},
        **{n: "ResNet18_Weights.IMAGENET1K_V1" for n in
           ("flowers_resnet18_frozen", "flowers_resnet18", "flowers_resnet18_deform_after_conv1",
            "flowers_resnet18_conv1_plus_deform")},
    }
    scratch = [n for n, m in pretrained.items() if n.split("_")[0] in ("dogbreed", "mobilenet", "dynconv")]
    assert scratch and all(pretrained[n] is None for n in scratch)


PRETRAINED_CASES = [
    *(c.name for c in registry().values() if c.suite == "flowers"),
    "resnet50_dcn_0000", "resnet50_dcn_0011", "resnet50_dcn_3463",  # none, two, and every block deformable
]


@pytest.mark.parametrize("name", PRETRAINED_CASES)
def test_table_maps_every_key_of_the_architecture(name: str) -> None:
    """Each case's table covers torchvision's file for its architecture key by key: nothing missing,
    nothing left over, at the smoke profile's 32 px (ViT: position embedding resized)."""
    from bench.measure.weights import map_pretrained

    case = get_case(name)
    assert case.weights is not None and case.weights.pretrained is not None
    model = built(case)
    mapped = map_pretrained(case.name, case.weights, model, fake_state_dict(case.weights.pretrained), "file")
    assert set(mapped.state) == set(model.state_dict())
    assert mapped.head_reinit  # 1000 ImageNet classes, 5 in the run


def test_a_stale_table_entry_is_an_error() -> None:
    from bench.measure.weights import map_pretrained

    case = get_case("flowers_resnet18")
    assert case.weights is not None
    stale = WeightsMap(head="fc", pretrained=ResNet18_Weights.IMAGENET1K_V1, new=("conv1.deform.*",))
    with pytest.raises(WeightsError, match=r"flowers_resnet18: .*new 'conv1.deform.\*'"):
        map_pretrained(case.name, stale, built(case), fake_state_dict(ResNet18_Weights.IMAGENET1K_V1), "file")


def test_a_key_the_table_does_not_declare_is_an_error() -> None:
    """deform_after_conv1 with the table of plain ResNet-18: conv1's keys moved and the DCN is undeclared."""
    from bench.measure.weights import map_pretrained

    case = get_case("flowers_resnet18_deform_after_conv1")
    plain = get_case("flowers_resnet18").weights
    assert plain is not None
    with pytest.raises(WeightsError) as info:
        map_pretrained(case.name, plain, built(case), fake_state_dict(ResNet18_Weights.IMAGENET1K_V1), "f.pth")
    text = str(info.value)
    assert "flowers_resnet18_deform_after_conv1: f.pth does not fit the model" in text
    assert "missing keys (4): conv1.0.weight, conv1.1.offset.weight, conv1.1.offset.bias, conv1.1.conv.weight" in text
    assert "unexpected keys (1): conv1.weight" in text


# -- pretrained, from the hub cache --------------------------------------------------------------------


def test_expected_path_is_where_torchvision_reads(hub: Path) -> None:
    member = ResNet18_Weights.IMAGENET1K_V1
    assert expected_path(member) == hub / "checkpoints" / "resnet18-f37072fd.pth"
    _, state = write_cached(member)
    loaded = member.get_state_dict(check_hash=True)  # torchvision's own call: reads the file, no download
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])


def test_pretrained_loads_the_cached_file(hub: Path) -> None:
    case = get_case("flowers_resnet18_frozen")
    path, state = write_cached(ResNet18_Weights.IMAGENET1K_V1)
    model = built(case)
    fresh_fc = {k: v.clone() for k, v in model.fc.state_dict().items()}
    fields = WeightsLoader(WeightsChoice("pretrained")).load_into(case, model)
    assert fields == {"weights": "torchvision:ResNet18_Weights.IMAGENET1K_V1", "weights_sha256": sha256(path),
                      "weights_head_reinit": True}
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert torch.equal(value, fresh_fc[key.removeprefix("fc.")]), key  # the builder's seeded init
        else:
            assert torch.equal(value, state[key]), key
    # the builder's freezing is intact: only fc trains
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}


def test_new_modules_keep_their_init_and_renamed_conv1_loads(hub: Path) -> None:
    case = get_case("flowers_resnet18_conv1_plus_deform")
    _, state = write_cached(ResNet18_Weights.IMAGENET1K_V1)
    model = built(case)
    deform = {k: v.clone() for k, v in model.conv1.deform.state_dict().items()}  # type: ignore[union-attr]
    WeightsLoader(WeightsChoice("pretrained")).load_into(case, model)
    assert torch.equal(model.conv1.conv.weight, state["conv1.weight"])  # type: ignore[union-attr]
    for key, value in model.conv1.deform.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(value, deform[key])


def test_dcn_starts_as_the_pretrained_conv2(hub: Path) -> None:
    """resnet50_dcn_0001 (layer4.2.conv2 deformable): its deformable conv holds the file's conv2, the
    offsets are zero, and the model computes what plain ResNet-50 with the file computes."""
    case = get_case("resnet50_dcn_0001")
    path, state = write_cached(ResNet50_Weights.IMAGENET1K_V1)
    model = built(case, num_classes=10)
    fields = WeightsLoader(WeightsChoice("pretrained")).load_into(case, model)
    assert fields["weights"] == "torchvision:ResNet50_Weights.IMAGENET1K_V1" and fields["weights_sha256"] == sha256(path)
    dcn = model.get_submodule("layer4.2.conv2")
    assert torch.equal(dcn.conv.weight, state["layer4.2.conv2.weight"])
    assert not dcn.offset.weight.any() and not dcn.offset.bias.any()
    assert torch.equal(model.get_submodule("layer4.1.conv2").weight, state["layer4.1.conv2.weight"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4.2.conv2.offset.weight", "layer4.2.conv2.offset.bias", "layer4.2.conv2.conv.weight",
                         "fc.weight", "fc.bias"}
    plain = torchvision.models.resnet50(weights=None)
    plain.load_state_dict(state)
    plain.fc, model.fc = nn.Identity(), nn.Identity()  # type: ignore[assignment]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), plain.eval()(x), rtol=1e-4, atol=1e-4)


def test_scratch_cases_stay_random_under_pretrained(hub: Path) -> None:
    case = get_case("dogbreed_cnn")
    model = built(case)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fields = WeightsLoader(WeightsChoice("pretrained")).load_into(case, model)
    assert fields == {"weights": None, "weights_sha256": None, "weights_head_reinit": None}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert missing_files(WeightsChoice("pretrained"), [case]) is None  # nothing to fetch: no error


def test_missing_file_names_the_path_and_the_command(hub: Path, no_download: list[str]) -> None:
    cases = [get_case(n) for n in ("resnet50_dcn_0000", "resnet50_dcn_0001", "flowers_resnet18", "dogbreed_cnn")]
    text = missing_files(WeightsChoice("pretrained"), cases)
    assert text is not None
    assert str(hub / "checkpoints" / "resnet50-0676ba61.pth") in text
    assert str(hub / "checkpoints" / "resnet18-f37072fd.pth") in text
    assert "ResNet50_Weights.IMAGENET1K_V1" in text and "resnet50_dcn_0000, resnet50_dcn_0001" in text
    assert fetch_command([ResNet18_Weights.IMAGENET1K_V1, ResNet50_Weights.IMAGENET1K_V1]) in text
    assert f"torch.hub.set_dir({str(hub)!r})" in text and "--bench-allow-download" in text
    assert missing_files(WeightsChoice("pretrained", allow_download=True), cases) is None
    # the loader refuses too (a file gone after the start), without touching the network
    with pytest.raises(WeightsError, match="resnet18-f37072fd.pth is missing"):
        WeightsLoader(WeightsChoice("pretrained")).load_into(cases[2], built(cases[2]))
    assert no_download == []


def test_allow_download_goes_through_the_weights_api(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    member = ResNet18_Weights.IMAGENET1K_V1
    fetched: list[tuple[str, str]] = []

    def download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        fetched.append((url, dst))
        torch.save(fake_state_dict(member), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    case = get_case("flowers_resnet18")
    fields = WeightsLoader(WeightsChoice("pretrained", allow_download=True)).load_into(case, built(case))
    assert fetched == [(member.url, str(expected_path(member)))]
    assert fields["weights_sha256"] == sha256(expected_path(member))


def test_missing_cache_file_stops_pytest_bench_before_any_case(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q", f"--benchmark-json={out}",
         "--bench-profile", "smoke", "--bench-case", "flowers_resnet18*", "--bench-case", "dogbreed_cnn",
         "--bench-weights", "pretrained"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=env,
    )
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]  # pytest's usage error
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in proc.stderr and "ResNet18_Weights.IMAGENET1K_V1.get_state_dict" in proc.stderr
    assert "flowers_resnet18_frozen" in proc.stderr
    assert not out.exists() and "passed" not in proc.stdout  # nothing ran
    assert not expected.exists()


# -- PATH ---------------------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x))


def tiny_case(frozen: bool = True) -> Case:
    def build(num_classes: int, image_size: int) -> nn.Module:
        model = Tiny(num_classes)
        if frozen:
            model.body.requires_grad_(False)
        return model

    regime = Regime(loss="cross_entropy", optimizer="adam", stages=(Stage(1.0, 1e-3),))
    return Case("tiny_weights", "test", build, 16, 3, 8, regime, Reported(source="test"),
                weights=WeightsMap(head="fc"))


def test_path_accepts_bare_and_wrapped_state_dicts(tmp_path: Path) -> None:
    state = Tiny(8).state_dict()
    for i, data in enumerate((state, {"state_dict": state, "epoch": 3}, {"model": state, "optimizer": {}})):
        path = tmp_path / f"{i}.pt"
        torch.save(data, path)
        assert set(read_state_dict(path)) == set(state)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="list.pt: not a state dict"):
        read_state_dict(tmp_path / "list.pt")


def test_path_loads_strictly_and_reinitialises_only_a_head_of_another_class_count(tmp_path: Path) -> None:
    case = tiny_case()
    path = tmp_path / "ckpt.pt"
    with Determinism(7):
        source = Tiny(3).state_dict()  # 3 classes; the run has 8
    torch.save({"state_dict": source}, path)
    model = built(case, num_classes=8)
    fresh_fc = model.fc.weight.detach().clone()  # type: ignore[union-attr]
    fields = WeightsLoader(parse_choice(str(path))).load_into(case, model)
    assert fields == {"weights": f"file:{path}", "weights_sha256": sha256(path), "weights_head_reinit": True}
    assert torch.equal(model.fc.weight, fresh_fc)  # type: ignore[union-attr]
    assert torch.equal(model.body[0].weight, source["body.0.weight"])  # type: ignore[index]
    same = built(case, num_classes=3)
    assert WeightsLoader(parse_choice(str(path))).load_into(case, same)["weights_head_reinit"] is False
    assert torch.equal(same.fc.weight, source["fc.weight"])  # type: ignore[union-attr]

    broken = dict(source)
    broken["body.9.weight"] = broken.pop("body.1.weight")
    broken["body.0.weight"] = torch.zeros(8, 3, 5, 5)
    with pytest.raises(WeightsError) as info:
        map_file(case.name, case.weights, built(case, num_classes=8), broken, str(path))
    text = str(info.value)
    assert text.startswith(f"tiny_weights: {path} does not fit the model")
    assert "missing keys (1): body.1.weight" in text and "unexpected keys (1): body.9.weight" in text
    assert "shape mismatch (1): body.0.weight (8, 3, 5, 5) vs model (8, 3, 3, 3)" in text


def test_path_missing_file_is_named_at_start(tmp_path: Path) -> None:
    text = missing_files(parse_choice(str(tmp_path / "nope.pt")), [])
    assert text is not None and "nope.pt: no such file" in text


def test_trainer_loads_before_training_and_records_the_weights(tmp_path: Path) -> None:
    case = tiny_case()
    splits = embedded(16, samples=64, seed=0)
    path = tmp_path / "ckpt.pt"
    with Determinism(3):
        source = Tiny(splits.num_classes).state_dict()
    torch.save(source, path)
    trainer = Trainer(case, splits, PROFILE, seed=0, weights=WeightsLoader(parse_choice(str(path))))
    # loaded before training, the frozen body as in the file
    assert torch.equal(trainer.module.body[0].weight, source["body.0.weight"])  # type: ignore[index]
    trainer.run_epoch()
    assert torch.equal(trainer.module.body[0].weight, source["body.0.weight"])  # type: ignore[index]  # frozen
    result = trainer.result()
    assert (result["weights"], result["weights_sha256"], result["weights_head_reinit"]) == (
        f"file:{path}", sha256(path), False)
    record = Record(case=case.name, suite="test", kind="train", profile="smoke", device="cpu",
                    params_total=10, params_trainable=2)
    assert random_frozen_backbone(record)
    record.update({k: result[k] for k in ("weights", "weights_sha256", "weights_head_reinit")})
    assert not random_frozen_backbone(record)
    plain = Trainer(case, splits, PROFILE, seed=0).result()
    assert plain["weights"] is None and plain["weights_sha256"] is None


def test_path_mismatch_is_recorded_as_error_and_the_run_goes_on(tmp_path: Path) -> None:
    """pytest bench/ --bench-weights PATH with dogbreed_cnn's state dict (3 classes): dogbreed_dsc
    does not fit (recorded as error, listing keys), dogbreed_cnn loads it with its head re-initialised."""
    with Determinism(0):
        state = get_case("dogbreed_cnn").build(num_classes=3)
    path = tmp_path / "cnn.pt"
    torch.save({"model": state.state_dict()}, path)
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "-p", "no:cacheprovider", "-q", f"--benchmark-json={out}",
         "--bench-profile", "smoke", "--bench-epochs", "1", "--bench-threads", "1", "--bench-kind", "train",
         "--bench-case", "dogbreed_dsc", "--bench-case", "dogbreed_cnn", "--bench-weights", str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    benches = {b["name"]: b["extra_info"] for b in data["benchmarks"] + data.get("archbench_failed", [])}
    dsc, cnn = benches["test_train[dogbreed_dsc]"], benches["test_train[dogbreed_cnn]"]
    assert dsc["status"] == "error" and dsc["weights"] == f"file:{path}"
    assert "does not fit the model" in dsc["error"] and "missing keys" in dsc["error"]
    assert "unexpected keys" in dsc["error"] and "layer2.depthwise.0.weight" in dsc["error"]
    assert cnn["status"] == "ok" and cnn["accuracy_test"] is not None
    assert (cnn["weights"], cnn["weights_sha256"], cnn["weights_head_reinit"]) == (f"file:{path}", sha256(path), True)


# -- bench compare -----------------------------------------------------------------------------------


def _compare(tmp_path: Path, base: list[Record], head: list[Record], settings: CompareSettings | None = None,
             strip_base: bool = False) -> tuple[int, str]:
    base_doc = results_json(base)
    if strip_base:  # a file written before the weights fields existed
        for bench in base_doc["benchmarks"]:
            for key in ("weights", "weights_sha256", "weights_head_reinit"):
                bench["extra_info"].pop(key)
    a = write_json(tmp_path / "base.json", base_doc)
    b = write_json(tmp_path / "head.json", results_json(head))
    out = io.StringIO()
    code = run(a, b, settings or CompareSettings(), OutputOptions(), Console(file=out, width=400))
    return code, out.getvalue()


def _trained(weights: str | None = None, sha: str | None = None, accuracy: float = 0.6, seed: int = 0) -> Record:
    record = train_record("resnet50_dcn_0000", "resnet50_dcn", accuracy=accuracy, noise_seed=seed)
    record.weights, record.weights_sha256 = weights, sha
    record.weights_head_reinit = None if weights is None else True
    return record


TV = "torchvision:ResNet50_Weights.IMAGENET1K_V1"


def test_compare_refuses_accuracies_from_different_weights(tmp_path: Path) -> None:
    code, out = _compare(tmp_path, [_trained()], [_trained(TV, "ab" * 32, accuracy=0.9, seed=1)])
    assert code == 3, out
    assert "test_train[resnet50_dcn_0000]: weights: base None, head 'torchvision:ResNet50_Weights.IMAGENET1K_V1'" in out
    # same identity, another file
    code, out = _compare(tmp_path, [_trained(TV, "ab" * 32)], [_trained(TV, "cd" * 32, seed=1)])
    assert code == 3 and f"weights_sha256: base '{'ab' * 32}', head '{'cd' * 32}'" in out


def test_compare_under_allow_incomparable_still_skips_those_accuracies(tmp_path: Path) -> None:
    base, head = [_trained()], [_trained(TV, "ab" * 32, accuracy=0.2, seed=1)]  # 40 points lower
    code, out = _compare(tmp_path, base, head, CompareSettings(allow_incomparable=True))
    assert code == 0, out  # the drop is about the weights, not a regression
    comparison = compare_runs(load_results(tmp_path / "base.json"), load_results(tmp_path / "head.json"),
                              CompareSettings(allow_incomparable=True))
    (bench,) = comparison.benchmarks
    assert not any(d.key.startswith("accuracy_") for d in bench.metrics)
    assert any(d.key == "time_epoch_s" for d in bench.metrics)  # the cost is still compared
    assert any("accuracy not compared: trained from different weights" in n for n in bench.notes)


def test_compare_same_weights_and_old_files_compare_as_before(tmp_path: Path) -> None:
    code, out = _compare(tmp_path, [_trained(TV, "ab" * 32)], [_trained(TV, "ab" * 32, accuracy=0.5, seed=1)])
    assert code == 1 and "accuracy_test" in out  # same weights: a 10-point drop is a regression
    # a file without the fields trained from random initialisation, like a run with --bench-weights none
    code, out = _compare(tmp_path, [_trained()], [_trained(seed=1)], strip_base=True)
    assert code == 0, out
    assert load_results(tmp_path / "base.json").benchmarks["test_train[resnet50_dcn_0000]"].record.weights is None
    code, out = _compare(tmp_path, [_trained()], [_trained(TV, "ab" * 32, seed=1)], strip_base=True)
    assert code == 3 and "weights: base None" in out

