"""Datasets for the fixed-budget training (docs/data.md describes them for users).

The default is :func:`embedded`: glyphs (discs, rings, squares, triangles, crosses, ...) drawn from a seed
with coordinate grids, under a random affine transform, with a clean and an elastically deformed test split.
It needs no files and no network and takes well under a second at the smoke profile's sizes.

Real datasets load through torchvision from a local ``root`` (:func:`load`); nothing is downloaded unless
``download=True``. One ``root`` serves every dataset, each under its own folder, as torchvision lays them out::

    root/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    root/flowers-102/{jpg/image_00001.jpg..., imagelabels.mat, setid.mat}
    root/dogbreeds/{train,val,test}/<class>/<image>        (report 001: 7 breeds, your own split)
    root/tinyimagenet/{train,val,test}/<class>/<image>     (report 002: the 50-class subset, your own split)

Every split yields ``(image, label)``: a float tensor C×H×W resized to ``image_size`` and normalised with the
ImageNet mean/std (the reports all do this), and an ``int``. Grayscale sources are repeated to 3 channels
(report 000); with ``channels == 1`` colour sources become PIL's luma, the embedded set its channel mean.

Deformation follows report 001, which deformed its validation and test images "to amplify the effect of
deformable layers": one smooth random displacement field per image (random values on a coarse grid, upsampled
bicubically), the same generator for the embedded and the real data. ``test_deformed`` is the *same* test
images deformed, so the clean/deformed accuracy gap measures the deformation alone. Validation is deformed
for the embedded set and the dog breeds (as in report 001) and clean elsewhere (as in reports 000, 002, 003).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

DATASETS: tuple[str, ...] = ("embedded", "fashionmnist", "cifar10", "flowers102", "dogbreeds", "tinyimagenet")

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class DatasetNotFound(FileNotFoundError):
    """A real dataset is not under the given root; the message names the expected paths and their source."""


@dataclass(frozen=True)
class Splits:
    """The four splits of one dataset, all at one image size and channel count."""

    name: str
    num_classes: int
    channels: int
    image_size: int
    train: Dataset
    val: Dataset
    test: Dataset
    test_deformed: Dataset | None

    def named(self) -> dict[str, Dataset]:
        """The splits that exist, by the names the records use."""
        out = {"train": self.train, "val": self.val, "test": self.test}
        if self.test_deformed is not None:
            out["test_deformed"] = self.test_deformed
        return out


@dataclass(frozen=True)
class Deformation:
    """How hard the embedded set is. Lengths are in image half-widths (the image spans [-1, 1])."""

    rotation_deg: float = 20.0
    scale: tuple[float, float] = (0.75, 1.05)
    shear_deg: float = 8.0
    translate: float = 0.12
    #: Standard deviation of the elastic displacement at the coarse control points.
    elastic_alpha: float = 0.07
    #: Control points per side of the elastic field: fewer means smoother, larger-scale warps.
    elastic_grid: int = 5
    #: Standard deviation of additive pixel noise, in [0, 1] intensity.
    noise: float = 0.04


#: Tuned on dogbreed_cnn under the smoke budget (6 seeds): clean test accuracy 0.73–0.81 of 8 classes and
#: about 7 points lower on the deformed split. ±30° rotation, 0.7–1.05 scale and 0.06 noise left it at
#: 0.29–0.62 (too close to the 2×-chance floor); ±45° at 0.16–0.38.
DEFAULT_DEFORMATION = Deformation()


# --------------------------------------------------------------------------------------------------------
# seeds and normalisation


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from ``seed`` and ``keys``, stable across processes (unlike ``hash``)."""
    text = repr((seed, *keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def _generator(seed: int, *keys: object) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def _mean_std(channels: int) -> tuple[Tensor, Tensor]:
    """ImageNet statistics; for one channel the average of the three (gray images are channel mixes)."""
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if channels == 1:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    return mean.view(-1, 1, 1), std.view(-1, 1, 1)


def _check_shape_args(image_size: int, channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8, got {image_size}")


class ImageTensors(Dataset):
    """Images held in memory as uint8 (like decoded files), normalised on access; ``labels`` is public."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError("images must be uint8 N×C×H×W with one label each")
        self.images = images
        self.labels = labels.long()
        self._mean, self._std = _mean_std(images.shape[1])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x = self.images[index].float().div_(255.0)
        return (x - self._mean) / self._std, int(self.labels[index])


def labels_of(dataset: Dataset) -> Tensor:
    """The labels of a split, without decoding images when the dataset exposes ``labels``."""
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, Tensor):
        return labels.long()
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------
# elastic deformation, shared by the embedded and the real data


def elastic_field(n: int, size: int, alpha: float, grid: int, generator: torch.Generator) -> Tensor:
    """``n`` smooth displacement fields (n×size×size×2, in grid_sample's [-1, 1] units).

    Random normal values on a coarse ``grid``×``grid`` lattice, upsampled bicubically: the warp is smooth
    at every image size, so a deformed 32-pixel image looks like a shrunk deformed 224-pixel one (unlike
    torchvision's ElasticTransform, whose alpha and sigma are in pixels).
    """
    coarse = torch.randn(n, 2, grid, grid, generator=generator) * alpha
    field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1).contiguous()


def _pixel_grid(size: int) -> Tensor:
    """Pixel centres in [-1, 1] as size×size×2 (x, y), grid_sample's align_corners=False convention."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack((x, y), dim=-1)


class ElasticDeformed(Dataset):
    """``base`` with each image warped by its own elastic field, seeded by (seed, index): any access order
    gives the same images."""

    def __init__(self, base: Dataset, seed: int, deformation: Deformation = DEFAULT_DEFORMATION) -> None:
        self.base = base
        self.seed = seed
        self.deformation = deformation
        self.labels = labels_of(base)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x, y = self.base[index]
        size = x.shape[-1]
        d = self.deformation
        field = elastic_field(1, size, d.elastic_alpha, d.elastic_grid, _generator(self.seed, "elastic", index))
        grid = _pixel_grid(size).unsqueeze(0) + field
        # Border padding: replicate the edge rather than paste black (or the mean) in from outside.
        warped = F.grid_sample(x.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return warped[0], y


# --------------------------------------------------------------------------------------------------------
# the embedded glyph set

Sdf = Callable[[Tensor, Tensor], Tensor]
#: Stroke half-width of outlined glyphs.
_STROKE = 0.09


def _disc(u: Tensor, v: Tensor, r: float, cu: float = 0.0, cv: float = 0.0) -> Tensor:
    return torch.hypot(u - cu, v - cv) - r


def _box(u: Tensor, v: Tensor, a: float, b: float, cu: float = 0.0, cv: float = 0.0) -> Tensor:
    du, dv = (u - cu).abs() - a, (v - cv).abs() - b
    return torch.hypot(du.clamp(min=0), dv.clamp(min=0)) + torch.maximum(du, dv).clamp(max=0)


def _polygon(u: Tensor, v: Tensor, sides: int, apothem: float) -> Tensor:
    # Intersection of half-planes; the first normal points down, so a triangle stands on its base.
    angles = [math.pi / 2 + 2 * math.pi * k / sides for k in range(sides)]
    return torch.stack([u * math.cos(a) + v * math.sin(a) for a in angles]).amax(0) - apothem


def _outline(sdf: Tensor) -> Tensor:
    return sdf.abs() - _STROKE


#: Glyph classes, in label order; :func:`embedded` uses the first ``num_classes``. No affine transform in
#: the range of :class:`Deformation` (rotations up to ±30°) maps one class onto another.
GLYPHS: tuple[tuple[str, Sdf], ...] = (
    ("disc", lambda u, v: _disc(u, v, 0.55)),
    ("ring", lambda u, v: _outline(_disc(u, v, 0.48))),
    ("square", lambda u, v: _box(u, v, 0.45, 0.45)),
    ("square_outline", lambda u, v: _outline(_box(u, v, 0.45, 0.45))),
    ("triangle", lambda u, v: _polygon(u, v, 3, 0.33)),
    ("triangle_outline", lambda u, v: _outline(_polygon(u, v, 3, 0.33))),
    ("plus", lambda u, v: torch.minimum(_box(u, v, 0.6, 0.13), _box(u, v, 0.13, 0.6))),
    ("bars", lambda u, v: torch.minimum(_box(u, v, 0.6, 0.12, cv=-0.3), _box(u, v, 0.6, 0.12, cv=0.3))),
    ("bullseye", lambda u, v: torch.minimum(_outline(_disc(u, v, 0.52)), _disc(u, v, 0.18))),
    ("crescent", lambda u, v: torch.maximum(_disc(u, v, 0.55), -_disc(u, v, 0.45, cu=0.3))),
    ("tee", lambda u, v: torch.minimum(_box(u, v, 0.6, 0.12, cv=-0.45), _box(u, v, 0.12, 0.55, cv=0.1))),
    ("ell", lambda u, v: torch.minimum(_box(u, v, 0.12, 0.6, cu=-0.35), _box(u, v, 0.45, 0.12, cu=0.0, cv=0.5))),
    ("two_dots", lambda u, v: torch.minimum(_disc(u, v, 0.22, cu=-0.33), _disc(u, v, 0.22, cu=0.33))),
    ("half_disc", lambda u, v: torch.maximum(_disc(u, v, 0.6, cv=0.25), v - 0.25)),
    ("hexagon_outline", lambda u, v: _outline(_polygon(u, v, 6, 0.48))),
    ("star", lambda u, v: torch.hypot(u, v) - 0.42 * (1 + 0.4 * torch.cos(5 * torch.atan2(v, u)))),
)

#: Pixels rendered at once: small enough for the intermediates to stay in cache, which is what makes
#: rendering fast; it also bounds memory at large image sizes.
_CHUNK_PIXELS = 1 << 16


@dataclass(frozen=True)
class _GlyphParams:
    labels: Tensor  # (n,)
    inverse: Tensor  # (n, 2, 2): image → glyph coordinates
    shift: Tensor  # (n, 2)
    background: Tensor  # (n, 3)
    foreground: Tensor  # (n, 3)
    noise_seed: int


def _draw_params(n: int, num_classes: int, deformation: Deformation, generator: torch.Generator) -> _GlyphParams:
    d = deformation
    # Balanced classes (every class present once n >= num_classes), in random order.
    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=generator)]

    def uniform(*shape: int, low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator)

    rot = torch.deg2rad(uniform(n, low=-d.rotation_deg, high=d.rotation_deg))
    shear = torch.tan(torch.deg2rad(uniform(n, low=-d.shear_deg, high=d.shear_deg)))
    scale = uniform(n, low=d.scale[0], high=d.scale[1])
    shift = uniform(n, 2, low=-d.translate, high=d.translate)
    cos, sin = torch.cos(rot), torch.sin(rot)
    rotation = torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)
    shearing = torch.eye(2).repeat(n, 1, 1)
    shearing[:, 0, 1] = shear
    forward = rotation @ shearing * scale.view(n, 1, 1)
    # Dark background, bright glyph, random hues: colour carries no class information.
    background = uniform(n, 3, low=0.0, high=0.4)
    foreground = uniform(n, 3, low=0.6, high=1.0)
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return _GlyphParams(labels, torch.linalg.inv(forward), shift, background, foreground, noise_seed)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run single-threaded, then restore the caller's thread count. The rendering chunks are small, and on a
    shared 2-core machine OpenMP's fork/join costs far more than it saves (measured: 8 ms instead of 20 µs
    for one elementwise op on 64k floats while another process held a core)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _render(params: _GlyphParams, size: int, channels: int, noise: float, field: Tensor | None) -> Tensor:
    """Anti-aliased glyph images as uint8 n×channels×size×size. With ``field``, each pixel p shows the clean
    image at p + field(p): the elastic warp is applied analytically, with no resampling blur."""
    n = len(params.labels)
    pixels = _pixel_grid(size)
    noise_gen = torch.Generator().manual_seed(params.noise_seed)
    # Half a pixel of edge softness: anti-aliasing without blurring thin strokes away at 32 pixels.
    softness = 1.0 / size
    out = torch.empty(n, channels, size, size, dtype=torch.uint8)
    # Rendered in label order, so each chunk evaluates each of its glyphs on one contiguous slice.
    order = torch.argsort(params.labels, stable=True)
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    for start in range(0, n, chunk):
        idx = order[start : start + chunk]
        m = len(idx)
        p = pixels.expand(m, size, size, 2)
        if field is not None:
            p = p + field[idx]
        q = torch.einsum("nij,nhwj->nhwi", params.inverse[idx], p - params.shift[idx].view(m, 1, 1, 2))
        u, v = q[..., 0], q[..., 1]
        labels, counts = torch.unique_consecutive(params.labels[idx], return_counts=True)
        bounds = [0, *torch.cumsum(counts, 0).tolist()]
        sdf = torch.cat([GLYPHS[k][1](u[a:b], v[a:b]) for k, a, b in zip(labels.tolist(), bounds, bounds[1:])])
        alpha = torch.sigmoid(sdf.div_(-softness)).unsqueeze(1)
        background = params.background[idx].view(m, 3, 1, 1)
        image = background + (params.foreground[idx].view(m, 3, 1, 1) - background) * alpha
        # The noise stream depends only on the params, so it is the same with or without a field.
        image = image.add_(noise * torch.randn(m, 3, size, size, generator=noise_gen)).clamp_(0, 1)
        if channels == 1:
            image = image.mean(1, keepdim=True)
        out[idx] = image.mul_(255).round_().to(torch.uint8)
    return out


def embedded(
    image_size: int,
    channels: int = 3,
    samples: int = 384,
    seed: int = 0,
    num_classes: int = 8,
    deformation: Deformation = DEFAULT_DEFORMATION,
) -> Splits:
    """The embedded glyph dataset: ``samples`` training images and a quarter of that for val and for test.

    Every split is under the random affine of ``deformation``; val and ``test_deformed`` (the test images
    again) also under its elastic warp. Bitwise identical for a seed; one channel is the average of the three.
    """
    _check_shape_args(image_size, channels)
    if not 2 <= num_classes <= len(GLYPHS):
        raise ValueError(f"num_classes must be in [2, {len(GLYPHS)}] (the glyphs defined), got {num_classes}")
    held_out = samples // 4
    if held_out < 1:
        raise ValueError(f"samples must be at least 4 (val/test are a quarter each), got {samples}")

    def split(name: str, n: int, deformed: bool) -> ImageTensors:
        params = _draw_params(n, num_classes, deformation, _generator(seed, "embedded", name))
        field = None
        if deformed:
            gen = _generator(seed, "embedded", name, "elastic")
            field = elastic_field(n, image_size, deformation.elastic_alpha, deformation.elastic_grid, gen)
        return ImageTensors(_render(params, image_size, channels, deformation.noise, field), params.labels)

    with _one_thread():
        return Splits(
            name="embedded",
            num_classes=num_classes,
            channels=channels,
            image_size=image_size,
            train=split("train", samples, deformed=False),
            val=split("val", held_out, deformed=True),
            test=split("test", held_out, deformed=False),
            test_deformed=split("test", held_out, deformed=True),
        )


# --------------------------------------------------------------------------------------------------------
# real datasets


class SourceImages(Dataset):
    """Selected items of a torchvision dataset that yields PIL images, converted to ``channels``, resized to
    a square ``image_size`` and normalised. Labels are known up front, so sampling never decodes images."""

    def __init__(self, source: Any, indices: Sequence[int], labels: Tensor, image_size: int, channels: int) -> None:
        self.source = source
        self.indices = [int(i) for i in indices]
        self.labels = labels[torch.as_tensor(self.indices, dtype=torch.long)].long()
        self.image_size = image_size
        self.mode = "L" if channels == 1 else "RGB"
        self._mean, self._std = _mean_std(channels)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from torchvision.transforms.v2 import functional as TF

        image, _ = self.source[self.indices[index]]
        # "RGB" from a gray image repeats it to 3 channels (report 000); "L" from RGB is PIL's ITU-R 601-2 luma.
        image = image.convert(self.mode)
        image = TF.resize(image, [self.image_size, self.image_size], antialias=True)
        x = TF.pil_to_tensor(image).float().div_(255.0)
        return (x - self._mean) / self._std, int(self.labels[index])


def _subset(n: int, k: int | None, seed: int, *keys: object) -> Tensor:
    """``k`` of ``range(n)`` chosen by the seed (all when ``k`` is None or ≥ n), in ascending order."""
    if k is None or k >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=_generator(seed, *keys))[:k].sort().values


#: What each real dataset needs under ``--data-root`` (torchvision's layouts; docs/data.md).
_FASHION_STEMS = tuple(f"{p}-{k}-ubyte" for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1"))
_CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_FLOWERS_FILES = ("jpg", "imagelabels.mat", "setid.mat")
_FOLDER_SPLITS = ("train", "val", "test")


def require(name: str, root: Path | None) -> None:
    """Raise what :func:`load` would for a dataset that is not there, without reading any of it, so
    that a run can refuse a missing dataset before its first case: ``ValueError`` for an unknown name,
    :class:`DatasetNotFound` naming every expected path that is missing."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if name == "embedded":
        return
    if root is None:
        raise DatasetNotFound(f"dataset {name!r} needs --data-root (none given).\n{_HOW[name]}")
    root = Path(root).expanduser()
    if name == "fashionmnist":
        raw = root / "FashionMNIST" / "raw"
        paths = [raw / s for s in _FASHION_STEMS if not (raw / f"{s}.gz").exists()]  # .gz is unpacked on load
    elif name == "cifar10":
        paths = [root / "cifar-10-batches-py" / f for f in _CIFAR_FILES]
    elif name == "flowers102":
        paths = [root / "flowers-102" / f for f in _FLOWERS_FILES]
    else:
        paths = [root / name / s for s in _FOLDER_SPLITS]
    _require(name, paths, _HOW[name])


def _require(name: str, paths: Sequence[Path], how: str) -> None:
    missing = [p for p in paths if not p.exists()]
    if missing:
        listed = "\n  ".join(str(p) for p in missing)
        raise DatasetNotFound(f"dataset {name!r} not found; missing:\n  {listed}\n{how}")


_HOW = {
    "fashionmnist": "Get the four *-ubyte.gz files of https://github.com/zalandoresearch/fashion-mnist (data/fashion) "
    "into that folder, or call load(..., download=True).",
    "cifar10": "Extract https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into the root, "
    "or call load(..., download=True).",
    "flowers102": "Get 102flowers.tgz (extract it: jpg/), imagelabels.mat and setid.mat from "
    "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ into that folder, or call load(..., download=True).",
    "dogbreeds": "Arrange report 001's images (the 7 breeds common to the Stanford Dogs and Dog Breed Images "
    "datasets) as train/, val/ and test/ folders with one sub-folder per breed. There is no download.",
    "tinyimagenet": "Arrange report 002's 50-class TinyImageNet subset as train/, val/ and test/ folders with one "
    "sub-folder per class (train/<wnid>/images/*.JPEG works as is). There is no download.",
}


def _rejected(name: str, where: Path, exc: Exception) -> DatasetNotFound:
    return DatasetNotFound(
        f"dataset {name!r}: files are present under {where} but torchvision rejected them "
        f"(incomplete or failed its checksum): {exc}\n{_HOW[name]}"
    )


def _report000(name: str, root: Path, image_size: int, channels: int, samples: int | None, seed: int,
               download: bool) -> tuple[SourceImages, SourceImages, SourceImages, int]:
    """FashionMNIST / CIFAR-10 as report 000 used them: 80/20 train/val of the official train set."""
    from torchvision import datasets

    if name == "fashionmnist":
        raw = root / "FashionMNIST" / "raw"
        if not download:
            _unpack_gz(raw, _FASHION_STEMS)
            _require(name, [raw / s for s in _FASHION_STEMS], _HOW[name])
        cls: Any = datasets.FashionMNIST
        where = raw
    else:
        where = root / "cifar-10-batches-py"
        if not download:
            _require(name, [where / f for f in _CIFAR_FILES], _HOW[name])
        cls = datasets.CIFAR10
    try:
        official_train = cls(str(root), train=True, download=download)
        official_test = cls(str(root), train=False, download=download)
    except RuntimeError as exc:
        raise _rejected(name, where, exc) from exc
    train_labels = torch.as_tensor(official_train.targets)
    test_labels = torch.as_tensor(official_test.targets)
    order = torch.randperm(len(train_labels), generator=_generator(seed, name, "80/20"))
    cut = round(0.8 * len(order))
    train_idx, val_idx = order[:cut], order[cut:]
    held_out = None if samples is None else max(1, samples // 4)
    train_idx = train_idx[_subset(len(train_idx), samples, seed, name, "train")].sort().values
    val_idx = val_idx[_subset(len(val_idx), held_out, seed, name, "val")].sort().values
    test_idx = _subset(len(test_labels), held_out, seed, name, "test")

    def make(source: Any, idx: Tensor, labels: Tensor) -> SourceImages:
        return SourceImages(source, idx.tolist(), labels, image_size, channels)

    return (
        make(official_train, train_idx, train_labels),
        make(official_train, val_idx, train_labels),
        make(official_test, test_idx, test_labels),
        10,
    )


def _unpack_gz(raw: Path, stems: Sequence[str]) -> None:
    """FashionMNIST ships as .gz and torchvision reads only the unpacked files; unpack next to them, which is
    what torchvision's own download does."""
    for stem in stems:
        packed, target = raw / f"{stem}.gz", raw / stem
        if not target.exists() and packed.exists():
            # Through a temporary name, so an interrupted unpack never passes for a complete file.
            partial = raw / f"{stem}.partial"
            with gzip.open(packed, "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.replace(target)


def _flowers102(root: Path, image_size: int, channels: int, samples: int | None, seed: int,
                download: bool) -> tuple[SourceImages, SourceImages, SourceImages, int]:
    """Flowers102 with its official train/val/test split."""
    from torchvision import datasets

    base = root / "flowers-102"
    if not download:
        _require("flowers102", [base / f for f in _FLOWERS_FILES], _HOW["flowers102"])
    held_out = None if samples is None else max(1, samples // 4)
    out = []
    for split, k in (("train", samples), ("val", held_out), ("test", held_out)):
        try:
            source = datasets.Flowers102(str(root), split=split, download=download)
        except RuntimeError as exc:
            raise _rejected("flowers102", base, exc) from exc
        # torchvision keeps Flowers102's labels only in a private list; reading them avoids decoding
        # every image just to learn its class.
        labels = torch.as_tensor(source._labels)
        idx = _subset(len(labels), k, seed, "flowers102", split)
        out.append(SourceImages(source, idx.tolist(), labels, image_size, channels))
    return out[0], out[1], out[2], 102


def _image_folders(name: str, root: Path, image_size: int, channels: int, samples: int | None, seed: int,
                   download: bool) -> tuple[SourceImages, SourceImages, SourceImages, int]:
    """``root/<name>/{train,val,test}/<class>/*``; classes are those of ``train`` (sorted names)."""
    from torchvision import datasets

    base = root / name
    if download:
        raise DatasetNotFound(f"dataset {name!r} has no download; expected {base}/{{train,val,test}}/<class>/*\n"
                              f"{_HOW[name]}")
    _require(name, [base / s for s in _FOLDER_SPLITS], _HOW[name])
    classes = sorted(e.name for e in (base / "train").iterdir() if e.is_dir())
    if not classes:
        raise DatasetNotFound(f"dataset {name!r}: no class folders in {base / 'train'}\n{_HOW[name]}")

    class _TrainClasses(datasets.ImageFolder):
        # Val/test use train's class indices, so a class missing from a small held-out split is no error.
        def find_classes(self, directory: Any) -> tuple[list[str], dict[str, int]]:
            return classes, {c: i for i, c in enumerate(classes)}

    held_out = None if samples is None else max(1, samples // 4)
    out = []
    for split, k in (("train", samples), ("val", held_out), ("test", held_out)):
        extra = sorted({e.name for e in (base / split).iterdir() if e.is_dir()} - set(classes))
        if extra:
            raise ValueError(f"dataset {name!r}: {base / split} has classes not in train: {extra}")
        source = _TrainClasses(str(base / split), allow_empty=split != "train")
        labels = torch.as_tensor(source.targets)
        idx = _subset(len(labels), k, seed, name, split)
        out.append(SourceImages(source, idx.tolist(), labels, image_size, channels))
    return out[0], out[1], out[2], len(classes)


def load(
    name: str,
    *,
    root: Path | None,
    image_size: int,
    channels: int,
    samples: int | None,
    seed: int,
    download: bool = False,
) -> Splits:
    """The dataset ``name`` (one of :data:`DATASETS`) at ``image_size`` and ``channels``.

    ``samples`` caps the training split (val and test get a quarter each; ``None`` keeps the full splits);
    the subset is chosen by ``seed``. Real datasets raise :class:`DatasetNotFound` naming the expected files
    when they are not under ``root``; they are downloaded only when ``download`` is true.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS}")
    _check_shape_args(image_size, channels)
    if name == "embedded":
        return embedded(image_size, channels, samples=384 if samples is None else samples, seed=seed)
    if root is None:
        raise DatasetNotFound(
            f"dataset {name!r} needs a root folder (none given); see bench.measure.data's docstring for the layout.\n"
            f"{_HOW[name]}"
        )
    root = Path(root).expanduser()
    args = (root, image_size, channels, samples, seed, download)
    if name in ("fashionmnist", "cifar10"):
        train, val, test, num_classes = _report000(name, *args)
    elif name == "flowers102":
        train, val, test, num_classes = _flowers102(*args)
    else:
        train, val, test, num_classes = _image_folders(name, *args)
    # Report 001 deformed its validation images too; the other reports validated on clean images.
    if name == "dogbreeds":
        val = ElasticDeformed(val, derive_seed(seed, name, "val"))  # type: ignore[assignment]
    return Splits(
        name=name,
        num_classes=num_classes,
        channels=channels,
        image_size=image_size,
        train=train,
        val=val,
        test=test,
        test_deformed=ElasticDeformed(test, derive_seed(seed, name, "test")),
    )
