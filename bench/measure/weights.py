"""Initial weights for the training benchmarks: ``--bench-weights none|pretrained|PATH`` (docs/weights.md).

* ``none``: every case starts from the builder's random initialisation (``weights`` recorded ``None``).
* ``pretrained``: the torchvision weights each report used, as the case's
  :class:`~suites.case.WeightsMap` declares, read from the torch hub cache where torchvision's weights
  API keeps them (``<torch.hub.get_dir()>/checkpoints/<file name of the URL>``). Nothing is downloaded
  unless ``--bench-allow-download`` is given; a missing file is reported at session start, with the
  exact path and a command that fetches it. Cases whose report trained from scratch stay random.
* ``PATH``: a state dict of the case's own model (bare, or under ``"state_dict"`` / ``"model"``), loaded
  strictly; only a classifier head of another class count is re-initialised instead.

The loading happens right after the model is built, inside the trainer's seeded scope and before the
model moves to its device; parameters are copied in place, so the builder's ``requires_grad`` freezing
stays as it was. Every record says which weights it started from (``weights``, ``weights_sha256``,
``weights_head_reinit``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from suites.case import Case, WeightsMap

__all__ = [
    "WeightsChoice", "WeightsError", "WeightsLoader", "expected_path", "fetch_command", "map_pretrained",
    "missing_files", "parse_choice", "read_state_dict", "sha256_of",
]

#: Keys a checkpoint may hold its state dict under (a training script's ``{"model": …, "optimizer": …}``).
STATE_DICT_ENTRIES = ("state_dict", "model")


class WeightsError(ValueError):
    """Weights cannot be loaded for a case; the message names the case, the file and the keys."""


@dataclass(frozen=True)
class WeightsChoice:
    """What ``--bench-weights`` asked for."""

    kind: Literal["none", "pretrained", "file"] = "none"
    #: ``file``: the path as given on the command line (recorded as such).
    path: str | None = None
    allow_download: bool = False


def parse_choice(value: str | None, allow_download: bool = False) -> WeightsChoice:
    """``--bench-weights`` and ``--bench-allow-download`` as a :class:`WeightsChoice`."""
    text = (value or "none").strip()
    if text in ("none", "pretrained"):
        return WeightsChoice(text, None, allow_download)  # type: ignore[arg-type]
    if not text:
        raise WeightsError("--bench-weights: expected none, pretrained or a state-dict file")
    return WeightsChoice("file", text, allow_download)


def expected_path(weights: WeightsEnum) -> Path:
    """Where torchvision's weights API reads (and would download) ``weights``: the hub directory's
    ``checkpoints``, under the file name of the URL (torch.hub.load_state_dict_from_url's ``cached_file``)."""
    name = os.path.basename(urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _member_name(weights: WeightsEnum) -> str:
    return f"{type(weights).__name__}.{weights.name}"


def fetch_command(members: Iterable[WeightsEnum]) -> str:
    """A shell command that downloads ``members`` into the hub directory this process reads."""
    unique = sorted({_member_name(m): m for m in members}.items())
    imports = ", ".join(sorted({type(m).__name__ for _, m in unique}))
    calls = "; ".join(f"{name}.get_state_dict(check_hash=True)" for name, _ in unique)
    hub = str(Path(torch.hub.get_dir()))
    return (f"python -c \"import torch; torch.hub.set_dir({hub!r}); "
            f"from torchvision.models import {imports}; {calls}\"")


def missing_files(choice: WeightsChoice, cases: Iterable[Case]) -> str | None:
    """Why the selected cases cannot start from ``choice``'s weights without a download, in one message
    naming every path expected and the command that fetches them; ``None`` when nothing is missing (or
    ``--bench-allow-download`` lets the weights API fetch it). Checked at session start, so that a run
    does not fail minutes in."""
    if choice.kind == "file":
        assert choice.path is not None
        if not Path(choice.path).is_file():
            return f"--bench-weights {choice.path}: no such file ({Path(choice.path).resolve()})"
        return None
    if choice.kind != "pretrained" or choice.allow_download:
        return None
    wanted: dict[Path, tuple[WeightsEnum, list[str]]] = {}
    for case in cases:
        member = case.weights.pretrained if case.weights is not None else None
        if member is None:
            continue
        path = expected_path(member)
        if not path.is_file():
            wanted.setdefault(path, (member, []))[1].append(case.name)
    if not wanted:
        return None
    lines = [(f"--bench-weights pretrained: {len(wanted)} torchvision weights file(s) missing from the torch hub "
              "cache (nothing is downloaded without --bench-allow-download):")]
    for path, (member, names) in wanted.items():
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        lines.append(f"  {path}  ({_member_name(member)}, for {shown})")
    lines.append("fetch them with:")
    lines.append("  " + fetch_command(member for member, _ in wanted.values()))
    lines.append("or pass --bench-allow-download")
    return "\n".join(lines)


def sha256_of(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks (a ViT-B/16 file is 330 MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A state dict from a file: a bare one, or a checkpoint holding it under ``"state_dict"`` or
    ``"model"``. Loaded with ``weights_only`` (tensors and plain containers, no code)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; each becomes this case's error
        raise WeightsError(f"{path}: not a loadable state dict ({type(exc).__name__}: {exc})") from exc
    if isinstance(data, Mapping):
        for entry in STATE_DICT_ENTRIES:
            if isinstance(data.get(entry), Mapping):
                data = data[entry]
                break
    if not isinstance(data, Mapping) or not all(isinstance(v, Tensor) for v in data.values()):
        raise WeightsError(f"{path}: not a state dict (expected tensors by name, bare or under "
                           f"{' or '.join(repr(e) for e in STATE_DICT_ENTRIES)})")
    return dict(data)


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _head_keys(model_keys: Iterable[str], head: str) -> list[str]:
    return [k for k in model_keys if k.startswith(head + ".")]


def _mismatch_text(where: str, missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    parts = [where]
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)):
        if keys:
            parts.append(f"{label} ({len(keys)}): {', '.join(keys)}")
    return "; ".join(parts)


@dataclass
class Mapped:
    """A state dict for the whole model, and whether its head was re-initialised."""

    state: dict[str, Tensor]
    head_reinit: bool


def _fill_head(mapped: dict[str, Tensor], own: Mapping[str, Tensor], head: str | None) -> bool:
    """Keep the model's own head where the file's differs in shape (another class count)."""
    if head is None:
        return False
    keys = _head_keys(own, head)
    if any(k in mapped and mapped[k].shape != own[k].shape for k in keys):
        for k in keys:
            mapped[k] = own[k]
        return True
    return False


def map_pretrained(case_name: str, spec: WeightsMap, model: nn.Module, source: Mapping[str, Tensor],
                   where: str) -> Mapped:
    """The file ``source`` (torchvision's architecture) as a state dict of ``model`` under ``spec``:
    renamed keys moved, the case's new modules and a head of another class count kept at their
    initialisation, the modules the case removed dropped. Anything else that does not match is a
    :class:`WeightsError` naming ``case_name``, ``where`` and the keys."""
    own = model.state_dict()
    mapped: dict[str, Tensor] = {}
    used_renames: set[str] = set()
    unused_hit: set[str] = set()
    unexpected: list[str] = []
    for key, value in source.items():
        if _matches(key, spec.unused):
            unused_hit.update(p for p in spec.unused if fnmatch.fnmatchcase(key, p))
            continue
        target = key
        for old, new in spec.renames:
            if key.startswith(old):
                target = new + key[len(old):]
                used_renames.add(old)
                break
        if target not in own:
            unexpected.append(key)
            continue
        mapped[target] = value
    new_hit = {p for p in spec.new for k in own if fnmatch.fnmatchcase(k, p)}
    stale = ([f"rename {old!r}" for old, _ in spec.renames if old not in used_renames]
             + [f"unused {p!r}" for p in spec.unused if p not in unused_hit]
             + [f"new {p!r}" for p in spec.new if p not in new_hit])
    if stale:
        raise WeightsError(f"{case_name}: its weights table names keys that {where} or the model does not have: "
                           f"{', '.join(stale)}")
    if spec.resize_pos_embedding:
        mapped = _resize_pos_embedding(model, mapped)
    head_reinit = _fill_head(mapped, own, spec.head)
    missing: list[str] = []
    for key, value in own.items():
        if key in mapped:
            continue
        if _matches(key, spec.new) or key.endswith(".num_batches_tracked"):
            # the case's own modules keep their initialisation; a BatchNorm counter absent from an old
            # file is what torch's own loading tolerates too (it is not a weight)
            mapped[key] = value
        else:
            missing.append(key)
    shapes = [f"{k} {tuple(mapped[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in mapped and mapped[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise WeightsError(_mismatch_text(f"{case_name}: {where} does not fit the model", missing, unexpected, shapes))
    return Mapped(mapped, head_reinit)


def _resize_pos_embedding(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    from collections import OrderedDict

    from torchvision.models.vision_transformer import interpolate_embeddings

    own = model.state_dict()
    key = "encoder.pos_embedding"
    if key not in state or key not in own or state[key].shape == own[key].shape:
        return state
    # The run trains ViT at the profile's image size (32 px in smoke): torchvision's own interpolation of
    # the patch grid's embedding, as when fine-tuning at another resolution.
    image_size, patch_size = int(model.image_size), int(model.patch_size)  # type: ignore[arg-type]
    return dict(interpolate_embeddings(image_size, patch_size, OrderedDict(state)))


def map_file(case_name: str, spec: WeightsMap | None, model: nn.Module, source: Mapping[str, Tensor],
             where: str) -> Mapped:
    """A ``PATH`` file as a state dict of ``model``: the same keys and shapes exactly, except the
    classifier head (``spec.head``), which is re-initialised when its class count differs."""
    own = model.state_dict()
    mapped = dict(source)
    head_reinit = _fill_head(mapped, own, spec.head if spec is not None else None)
    missing = [k for k in own if k not in mapped]
    unexpected = [k for k in mapped if k not in own]
    shapes = [f"{k} {tuple(mapped[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in mapped and mapped[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise WeightsError(_mismatch_text(f"{case_name}: {where} does not fit the model", missing, unexpected, shapes))
    return Mapped(mapped, head_reinit)


@dataclass
class WeightsLoader:
    """The run's ``--bench-weights``: loads a case's initial weights into its freshly built model and
    says what it loaded. Hashes each file once per run."""

    choice: WeightsChoice = field(default_factory=WeightsChoice)
    _hashes: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> WeightsLoader:
        """From the ``--bench-*`` options by dest (the pytest plugin's and ``bench ab``'s worker's)."""
        return cls(parse_choice(options.get("bench_weights"), bool(options.get("bench_allow_download"))))

    def identity(self, case: Case) -> str | None:
        """What ``case`` starts from under this choice: ``None`` for random initialisation."""
        if self.choice.kind == "file":
            return f"file:{self.choice.path}"
        member = case.weights.pretrained if case.weights is not None else None
        if self.choice.kind == "pretrained" and member is not None:
            return f"torchvision:{_member_name(member)}"
        return None

    def _hash(self, path: Path) -> str:
        key = path.resolve()
        if key not in self._hashes:
            self._hashes[key] = sha256_of(key)
        return self._hashes[key]

    def load_into(self, case: Case, model: nn.Module) -> dict[str, Any]:
        """Load ``case``'s initial weights into ``model`` in place (``requires_grad`` untouched); return
        the record fields ``weights``, ``weights_sha256``, ``weights_head_reinit``."""
        identity = self.identity(case)
        fields: dict[str, Any] = {"weights": identity, "weights_sha256": None, "weights_head_reinit": None}
        if identity is None:
            return fields
        if self.choice.kind == "file":
            assert self.choice.path is not None
            path = Path(self.choice.path)
            if not path.is_file():
                raise WeightsError(f"{case.name}: --bench-weights {self.choice.path}: no such file")
            mapped = map_file(case.name, case.weights, model, read_state_dict(path), str(path))
        else:
            assert case.weights is not None and case.weights.pretrained is not None
            member = case.weights.pretrained
            path = expected_path(member)
            if not path.is_file() and not self.choice.allow_download:
                # checked at session start already; the file may have gone since
                raise WeightsError(f"{case.name}: {path} is missing ({_member_name(member)}); fetch it with: "
                                   f"{fetch_command([member])}")
            # torchvision's weights API: reads the cache file, downloads it first only when absent (and
            # then only here, with --bench-allow-download)
            source = member.get_state_dict(progress=False, check_hash=True, map_location="cpu")
            mapped = map_pretrained(case.name, case.weights, model, source, f"{path} ({_member_name(member)})")
        with torch.no_grad():
            model.load_state_dict(mapped.state, strict=True)
        fields.update(weights_sha256=self._hash(path), weights_head_reinit=mapped.head_reinit)
        return fields
