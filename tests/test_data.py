"""bench.measure.data: the embedded glyph set, and each real dataset read from small files written here in its real
on-disk format."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.measure import data
from bench.measure.data import DATASETS, DatasetNotFound, ElasticDeformed, Splits, embedded, labels_of, load

SPLITS = ("train", "val", "test", "test_deformed")


def _images(ds: torch.utils.data.Dataset) -> torch.Tensor:
    return torch.stack([ds[i][0] for i in range(len(ds))])


def _unnormalise(x: torch.Tensor) -> torch.Tensor:
    mean, std = data._mean_std(x.shape[-3])
    return x * std + mean


# ---------------------------------------------------------------------------------------------- embedded


def test_embedded_is_bitwise_deterministic_per_seed() -> None:
    a, b = embedded(24, samples=64, seed=3), embedded(24, samples=64, seed=3)
    for split in SPLITS:
        sa, sb = getattr(a, split), getattr(b, split)
        assert torch.equal(sa.images, sb.images) and torch.equal(sa.labels, sb.labels), split


def test_embedded_differs_between_seeds() -> None:
    a, b = embedded(24, samples=64, seed=0), embedded(24, samples=64, seed=1)
    for split in SPLITS:
        assert not torch.equal(getattr(a, split).images, getattr(b, split).images), split


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 33, 64])
def test_embedded_shapes(channels: int, size: int) -> None:
    s = embedded(size, channels, samples=40, seed=0, num_classes=5)
    assert (s.name, s.num_classes, s.channels, s.image_size) == ("embedded", 5, channels, size)
    assert [len(getattr(s, k)) for k in SPLITS] == [40, 10, 10, 10]
    x, y = s.train[0]
    assert x.shape == (channels, size, size) and x.dtype == torch.float32 and isinstance(y, int)
    # normalised with the ImageNet statistics: the raw [0, 1] range maps to about [-2.1, 2.7]
    assert -2.2 < float(x.min()) and float(x.max()) < 2.7


def test_embedded_every_class_in_every_split() -> None:
    s = embedded(16, samples=128, seed=0, num_classes=8)
    for split in SPLITS:
        assert set(labels_of(getattr(s, split)).tolist()) == set(range(8)), split


def test_embedded_deformed_test_is_the_test_set_deformed() -> None:
    s = embedded(32, samples=64, seed=0)
    assert torch.equal(s.test.labels, s.test_deformed.labels)
    clean, deformed = s.test.images.float(), s.test_deformed.images.float()
    per_image = (clean - deformed).abs().mean(dim=(1, 2, 3))
    assert bool((per_image > 1.0).all()), "every deformed test image should differ from its clean twin"


def test_embedded_gray_is_the_average_of_rgb() -> None:
    rgb, gray = embedded(16, 3, samples=16, seed=0), embedded(16, 1, samples=16, seed=0)
    # Same draws; gray is the channel mean before quantisation, so the two agree to a grey level or two.
    diff = rgb.train.images.float().mean(1, keepdim=True) - gray.train.images.float()
    assert float(diff.abs().max()) <= 2.0


def test_embedded_argument_checks() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        embedded(16, num_classes=len(data.GLYPHS) + 1)
    with pytest.raises(ValueError, match="channels"):
        embedded(16, channels=2)


def test_elastic_deformed_is_independent_of_access_order() -> None:
    base = embedded(16, samples=16, seed=0).test
    deformed = ElasticDeformed(base, seed=5)
    forward = [deformed[i][0] for i in range(len(deformed))]
    backward = [deformed[i][0] for i in reversed(range(len(deformed)))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))
    assert not torch.equal(forward[0], base[0][0])


# ---------------------------------------------------------------------------------------- real datasets
# Each writer produces a few images in the dataset's own on-disk format; labels cycle through the classes.


def _idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_fashionmnist(root: Path, n_train: int = 50, n_test: int = 20) -> None:
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n, compress in (("train", n_train, True), ("t10k", n_test, False)):
        # the training files as the .gz the dataset ships as, the test files already unpacked
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, compress)


def write_cifar10(root: Path, per_batch: int = 8, n_test: int = 12) -> None:
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in batches:
        n = n_test if name == "test_batch" else per_batch
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}
        (base / name).write_bytes(pickle.dumps(entry))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def write_flowers102(root: Path, n: int = 24, classes: int = 4) -> None:
    from scipy.io import savemat

    base = root / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(base / "jpg" / f"image_{i:05d}.jpg")
    savemat(base / "imagelabels.mat", {"labels": np.arange(n) % classes + 1})  # 1-based, as the real file
    ids = np.arange(1, n + 1)
    savemat(base / "setid.mat", {"trnid": ids[0::3], "valid": ids[1::3], "tstid": ids[2::3]})


def write_image_folders(root: Path, name: str, classes: int = 3, per_class: int = 4, nested: bool = False) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for c in range(classes):
            if split == "val" and c == classes - 1:
                continue  # a class missing from a small held-out split must not shift the labels
            folder = root / name / split / f"class{c}" / ("images" if nested and split == "train" else "")
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                image = Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8))
                image.save(folder / f"{i}.{'JPEG' if nested else 'png'}")


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download fails the test."""
    from torchvision.datasets import cifar, flowers102, mnist

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bench.measure.data tried to download")

    for module in (mnist, cifar, flowers102):
        monkeypatch.setattr(module, "download_and_extract_archive", refuse)
    monkeypatch.setattr(flowers102, "download_url", refuse)


@pytest.fixture
def skip_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision compares CIFAR-10's and Flowers102's files with the real ones' md5 sums, which files
    written here cannot match; keep its existence check and drop only the checksum."""
    from torchvision.datasets import cifar, flowers102

    def exists(fpath: object, md5: object = None) -> bool:
        return os.path.isfile(fpath)  # type: ignore[arg-type]

    monkeypatch.setattr(cifar, "check_integrity", exists)
    monkeypatch.setattr(flowers102, "check_integrity", exists)


def _check_splits(s: Splits, name: str, num_classes: int, channels: int, size: int) -> None:
    assert (s.name, s.num_classes, s.channels, s.image_size) == (name, num_classes, channels, size)
    for split in SPLITS:
        ds = getattr(s, split)
        assert ds is not None and len(ds) > 0, split
        x, y = ds[0]
        assert x.shape == (channels, size, size) and x.dtype == torch.float32, split
        assert 0 <= y < num_classes
    assert torch.equal(labels_of(s.test), labels_of(s.test_deformed))
    assert not torch.equal(_images(s.test), _images(s.test_deformed))


@pytest.mark.usefixtures("no_download")
def test_fashionmnist_80_20_split_gray_repeated(tmp_path: Path) -> None:
    write_fashionmnist(tmp_path)
    s = load("fashionmnist", root=tmp_path, image_size=36, channels=3, samples=None, seed=0)
    _check_splits(s, "fashionmnist", 10, 3, 36)
    assert (len(s.train), len(s.val), len(s.test)) == (40, 10, 20)  # report 000: 80/20 of the train set
    x = _unnormalise(s.train[0][0])
    assert torch.allclose(x[0], x[1], atol=1e-6) and torch.allclose(x[1], x[2], atol=1e-6)  # gray repeated
    small = load("fashionmnist", root=tmp_path, image_size=16, channels=1, samples=8, seed=0)
    assert (len(small.train), len(small.val), len(small.test)) == (8, 2, 2)
    assert small.train[0][0].shape == (1, 16, 16)


@pytest.mark.usefixtures("no_download", "skip_md5")
def test_cifar10(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    s = load("cifar10", root=tmp_path, image_size=20, channels=3, samples=None, seed=0)
    _check_splits(s, "cifar10", 10, 3, 20)
    assert (len(s.train), len(s.val), len(s.test)) == (32, 8, 12)
    gray = load("cifar10", root=tmp_path, image_size=20, channels=1, samples=None, seed=0)
    assert gray.train[0][0].shape == (1, 20, 20)


@pytest.mark.usefixtures("no_download")
def test_cifar10_checksum_failure_is_reported_not_downloaded(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(DatasetNotFound, match="rejected"):
        load("cifar10", root=tmp_path, image_size=20, channels=3, samples=None, seed=0)


@pytest.mark.usefixtures("no_download", "skip_md5")
def test_flowers102_official_splits(tmp_path: Path) -> None:
    write_flowers102(tmp_path)
    s = load("flowers102", root=tmp_path, image_size=24, channels=3, samples=None, seed=0)
    _check_splits(s, "flowers102", 102, 3, 24)
    assert (len(s.train), len(s.val), len(s.test)) == (8, 8, 8)
    assert labels_of(s.train).tolist() == [i % 4 for i in range(0, 24, 3)]  # 1-based labels made 0-based


@pytest.mark.usefixtures("no_download")
@pytest.mark.parametrize("name", ["dogbreeds", "tinyimagenet"])
def test_image_folders(tmp_path: Path, name: str) -> None:
    write_image_folders(tmp_path, name, nested=name == "tinyimagenet")
    s = load(name, root=tmp_path, image_size=16, channels=3, samples=None, seed=0)
    _check_splits(s, name, 3, 3, 16)
    assert sorted(set(labels_of(s.val).tolist())) == [0, 1]  # class2 absent from val, indices unshifted
    assert labels_of(s.test).tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # report 001 deformed the dog-breed validation images; the other reports validated on clean images
    assert isinstance(s.val, ElasticDeformed) == (name == "dogbreeds")


@pytest.mark.usefixtures("no_download")
def test_image_folder_extra_class_is_an_error(tmp_path: Path) -> None:
    write_image_folders(tmp_path, "dogbreeds")
    (tmp_path / "dogbreeds" / "test" / "stray").mkdir()
    with pytest.raises(ValueError, match="stray"):
        load("dogbreeds", root=tmp_path, image_size=16, channels=3, samples=None, seed=0)


@pytest.mark.usefixtures("no_download")
def test_real_subsample_and_deformation_are_deterministic(tmp_path: Path) -> None:
    write_image_folders(tmp_path, "dogbreeds", per_class=6)
    a, b, c = (load("dogbreeds", root=tmp_path, image_size=16, channels=3, samples=8, seed=seed) for seed in (0, 0, 1))
    assert len(a.train) == 8 and len(a.test) == 2
    assert a.train.indices == b.train.indices and a.train.indices != c.train.indices
    assert torch.equal(_images(a.test_deformed), _images(b.test_deformed))


EXPECTED_PATH = {
    "fashionmnist": Path("FashionMNIST") / "raw" / "train-images-idx3-ubyte",
    "cifar10": Path("cifar-10-batches-py") / "data_batch_1",
    "flowers102": Path("flowers-102") / "imagelabels.mat",
    "dogbreeds": Path("dogbreeds") / "train",
    "tinyimagenet": Path("tinyimagenet") / "train",
}


@pytest.mark.usefixtures("no_download")
@pytest.mark.parametrize("name", [d for d in DATASETS if d != "embedded"])
def test_missing_dataset_names_the_expected_path(tmp_path: Path, name: str) -> None:
    with pytest.raises(DatasetNotFound) as info:
        load(name, root=tmp_path, image_size=16, channels=3, samples=8, seed=0)
    message = str(info.value)
    assert str(tmp_path / EXPECTED_PATH[name]) in message and repr(name) in message
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DatasetNotFound, match="root"):
        load(name, root=None, image_size=16, channels=3, samples=8, seed=0)


def test_load_embedded_and_unknown() -> None:
    s = load("embedded", root=None, image_size=16, channels=1, samples=32, seed=2)
    assert torch.equal(s.train.images, embedded(16, 1, samples=32, seed=2).train.images)
    with pytest.raises(ValueError, match="unknown dataset"):
        load("imagenet", root=None, image_size=16, channels=3, samples=8, seed=0)
