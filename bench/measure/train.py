"""Fixed-budget training of one case under its report's regime (docs/metrics.md defines the accuracy
metrics, docs/profiles.md the budget).

The budget is the profile's: ``train_epochs`` epochs over the training split in batches of
``train_batch_size``. The regime's stages share that budget by their ``fraction`` of the steps, so a report's
"50/14/6 epochs" becomes 50/70, 14/70 and 6/70 of however many steps the profile allows.

How the regime is honoured, and where a choice was made:

- Trainable set: the parameters with ``requires_grad`` after the case's builder applied its freezing. Frozen
  layers still run in train mode (BatchNorm statistics update), as a plain ``model.train()`` loop does.
- Each stage gets a *fresh* optimiser: report 001's staged training calls a ``fit_one_cycle`` helper once per
  stage and that helper builds its own optimiser, and report 000's two phases are separate runs too.
- ``one_cycle`` is ``OneCycleLR`` over the stage's steps with ``max_lr = stage.lr`` and PyTorch's defaults
  (which also cycle Adam's beta1 / SGD's momentum), as that helper does; ``constant`` keeps ``stage.lr``.
- ``grad_clip`` clips each gradient *value* (``clip_grad_value_``): report 001's ``grad_clip = 0.1`` is the
  argument of that ``fit_one_cycle`` helper, which calls ``nn.utils.clip_grad_value_``.
- SGD uses momentum 0.9; Adam's ``weight_decay`` is its coupled L2 term, AdamW's the decoupled one.
- Losses: ``cross_entropy`` on logits; ``nll`` on LogSoftmax outputs; ``tcel`` (report 003) is
  ``TripletMarginLoss(margin)`` on the model outputs of anchor, positive and negative (three forward passes)
  plus cross-entropy on the anchor. Positives and negatives are drawn per step by the seed: same class as the
  anchor (another image when the class has one), any other class. ``loss_*`` in the results is always the
  classification term, so that the triplet term does not make TCEL's losses incomparable with the rest.
- Early stopping (report 000's patience 5) is not applied: at a budget of a few epochs it would never
  trigger, and stopping early would make the budget differ between cases.
- A non-finite loss stops the case at that step (no update is made from it): ``status`` becomes
  ``diverged``, ``diverged_step`` is the 0-based global index of that step, and no accuracies are reported.

Initial weights (``--bench-weights``, bench/measure/weights.py): loaded into the model right after it is built,
inside the seeded scope and before it moves to the device; the record says which (``weights``, ``None`` for
random initialisation), the file's SHA-256, and whether a classifier head was re-initialised.

Train loss and accuracy are the means over the epoch's batches, as the reports' training loops print them;
val/test are evaluated in eval mode without gradients. ``seconds`` per epoch time the training steps only.

The run's execution modes (precision, memory format, compile; docs/modes.md) apply here as in the timing
harness, through the same :class:`~bench.measure.modes.Executor`: the model and loss run under its autocast, the
backward pass and optimizer step go through its fp16 scaler, and evaluation runs under the same autocast.
An optimizer step the fp16 scaler skips (overflowed gradients) does not advance the learning-rate
schedule, and is counted in ``amp_skipped_steps``; the step still counts against the budget.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from bench.measure.data import Splits, derive_seed, labels_of
from bench.measure.devices import CpuDevice, Device
from bench.measure.executor import Executor
from bench.measure.objectives import (
    Batch,
    classification_loss,
    compute_loss,
    make_optimizer,
    trainable_parameters,
)
from bench.measure.weights import WeightsLoader
from bench.record.modes import Modes
from bench.record.profiles import Profile
from suites.case import Case, Stage

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test", "test_deformed")


class Determinism:
    """Seeded RNG streams and deterministic algorithms, for the duration of a ``with`` block only.

    Entering saves the caller's RNG states (torch CPU and the device's, ``random``, NumPy's), deterministic-
    algorithm and cuDNN flags and thread count, and installs this scope's own; leaving saves this scope's RNG
    states for the next entry and restores the caller's. A trainer can therefore enter it for every epoch and
    get one uninterrupted seeded stream, and leave no global state behind.

    ``torch.use_deterministic_algorithms(True)`` is set on CPU only: on CUDA it needs
    ``CUBLAS_WORKSPACE_CONFIG`` set before cuBLAS initialises, which a scope cannot guarantee, and it raises on
    ops without a deterministic kernel; there cuDNN is made deterministic (no autotuning) instead, which is
    run-to-run stable for these models but not guaranteed bitwise.
    """

    def __init__(self, seed: int, device: Device | None = None, threads: int | None = None) -> None:
        self.seed = seed
        self.device = device if device is not None else CpuDevice()
        self.threads = threads
        self._own: dict[str, Any] | None = None
        self._saved: dict[str, Any] | None = None

    def _capture(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state(), "random": random.getstate(),
                                 "device": self.device.rng_state()}
        try:
            import numpy

            state["numpy"] = numpy.random.get_state()
        except ImportError:
            state["numpy"] = None
        return state

    def _install(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        random.setstate(state["random"])
        self.device.set_rng_state(state["device"])
        if state["numpy"] is not None:
            import numpy

            numpy.random.set_state(state["numpy"])

    def __enter__(self) -> None:
        if self._saved is not None:
            raise RuntimeError("Determinism scope is not re-entrant; leave it before entering again")
        self._saved = {
            "rng": self._capture(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "cudnn": (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark),
            "threads": torch.get_num_threads(),
        }
        if self._own is None:
            # First entry: seed every stream. torch.manual_seed also seeds every CUDA device.
            torch.manual_seed(self.seed)
            random.seed(self.seed)
            if self._saved["rng"]["numpy"] is not None:
                import numpy

                numpy.random.seed(self.seed % 2**32)
        else:
            self._install(self._own)
        if self.device.bitwise_deterministic:
            torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        if self.threads is not None:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        saved, self._saved = self._saved, None
        assert saved is not None
        self._own = self._capture()
        self._install(saved["rng"])
        torch.use_deterministic_algorithms(saved["deterministic"], warn_only=saved["warn_only"])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved["cudnn"]
        torch.set_num_threads(saved["threads"])


def stage_steps(stages: Sequence[Stage], total: int) -> list[int]:
    """Steps per stage: each stage's ``fraction`` of ``total``, rounded by largest remainder so they sum to
    ``total`` (a stage may get 0 steps at a tiny budget; it is then skipped)."""
    exact = [s.fraction * total for s in stages]
    steps = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(stages)), key=lambda i: (-(exact[i] - steps[i]), i))
    for i in by_remainder[: total - sum(steps)]:
        steps[i] += 1
    return steps


class _WithIndex(Dataset):
    """Yields ``(image, label, index)``; TCEL needs the anchor's index to pick a different positive."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        x, y = self.base[index]
        return x, y, index


class _TripletSampler:
    """Draws, for anchors, a positive (same class, another image when there is one) and a negative (another
    class) uniformly from the training split, from its own seeded generator."""

    def __init__(self, labels: Tensor, seed: int) -> None:
        if labels.unique().numel() < 2:
            raise ValueError("tcel needs at least two classes in the training split")
        self.labels = labels
        self.order = torch.argsort(labels, stable=True)
        self.counts = torch.bincount(labels)
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        self.rank = torch.empty_like(labels)
        self.rank[self.order] = torch.arange(len(labels)) - self.starts[labels[self.order]]
        self.generator = torch.Generator().manual_seed(seed)

    def draw(self, anchors: Tensor) -> tuple[Tensor, Tensor]:
        """Dataset indices of a positive and a negative for each anchor index."""
        y = self.labels[anchors]
        count, start = self.counts[y], self.starts[y]
        u_pos, u_neg = torch.rand(2, len(anchors), generator=self.generator)
        # Positive: one of the class's other (count - 1) images; skip over the anchor's own rank.
        k = (u_pos * (count - 1).clamp(min=1)).long()
        k = torch.where(count > 1, k + (k >= self.rank[anchors]).long(), self.rank[anchors])
        positive = self.order[start + k]
        # Negative: one of the (n - count) images outside the class, which is one block in ``order``.
        j = (u_neg * (len(self.labels) - count)).long()
        negative = self.order[torch.where(j < start, j, j + count)]
        return positive, negative


def _stack(dataset: Dataset, indices: Tensor) -> Tensor:
    return torch.stack([dataset[i][0] for i in indices.tolist()])


class Trainer:
    """Trains one case on ``splits`` within ``profile``'s budget, one epoch per :meth:`run_epoch`."""

    def __init__(
        self,
        case: Case,
        splits: Splits,
        profile: Profile,
        *,
        seed: int = 0,
        device: Device | None = None,
        model: nn.Module | None = None,
        modes: Modes | None = None,
        weights: WeightsLoader | None = None,
    ) -> None:
        self.case = case
        self.regime = case.regime
        self.splits = splits
        self.profile = profile
        self.seed = seed
        #: Where it trains; :attr:`device` is the torch device tensors go to.
        self.on: Device = device if device is not None else CpuDevice()
        self.device = self.on.torch_device
        if (self.regime.loss == "nll") != case.log_probs:
            raise ValueError(
                f"case {case.name!r}: loss {self.regime.loss!r} does not fit log_probs={case.log_probs} "
                "(NLL is for LogSoftmax outputs, cross-entropy and TCEL for logits)"
            )
        self.executor = Executor(modes or Modes(), self.device)
        self._scope = Determinism(seed, self.on)
        with self._scope:
            built = model if model is not None else case.build(
                num_classes=splits.num_classes, image_size=splits.image_size
            )
            # Right after the build, on the CPU: a head kept at its initialisation is the one this seeded
            # scope drew, and copying in place leaves the builder's requires_grad freezing as it was.
            #: ``weights`` / ``weights_sha256`` / ``weights_head_reinit`` of the record (bench/measure/weights.py).
            self.weights_fields = (weights or WeightsLoader()).load_into(case, built)
            #: The case's own module; :attr:`model` is what runs (compiled when asked), same parameters.
            self.module = built.to(self.device)
        self.params = trainable_parameters(self.module)
        if not self.params:
            raise ValueError(f"case {case.name!r}: no trainable parameters")

        train_size = len(splits.train)  # type: ignore[arg-type]
        self.batch_size = max(1, min(profile.train_batch_size, train_size))
        # drop_last: a last batch of one image breaks BatchNorm in train mode, and equal batches keep
        # every step the same cost.
        self.steps_per_epoch = train_size // self.batch_size
        self.total_steps = profile.train_epochs * self.steps_per_epoch
        self.stage_steps = stage_steps(self.regime.stages, self.total_steps)
        self._triplets = None
        if self.regime.loss == "tcel":
            self._triplets = _TripletSampler(labels_of(splits.train), derive_seed(seed, "triplets"))
        self._loader = DataLoader(
            _WithIndex(splits.train),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=0,
            generator=torch.Generator().manual_seed(derive_seed(seed, "loader")),
        )

        self.step = 0
        self.curve: list[dict[str, float]] = []
        self.epoch_seconds: list[float] = []
        self.diverged_step: int | None = None
        self._stage = -1
        self._optimizer: torch.optim.Optimizer | None = None
        self._scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self._final: tuple[int, dict[str, tuple[float, float] | None]] | None = None
        # last: nothing after it can fail and leave the case's compiled state behind
        self.model = self.executor.prepare(self.module)

    # ---------------------------------------------------------------------------------------- training

    @property
    def status(self) -> str:
        return "ok" if self.diverged_step is None else "diverged"

    def _enter_stage_for(self, step: int) -> None:
        """Build the optimiser and scheduler of the stage that ``step`` falls in, when it changes."""
        boundary = 0
        for index, steps in enumerate(self.stage_steps):
            boundary += steps
            if step < boundary:
                break
        if index == self._stage:
            return
        stage = self.regime.stages[index]
        self._stage = index
        self._optimizer = make_optimizer(self.regime, self.params, stage.lr)
        self._scheduler = None
        if stage.schedule == "one_cycle":
            self._scheduler = torch.optim.lr_scheduler.OneCycleLR(
                self._optimizer, max_lr=stage.lr, total_steps=self.stage_steps[index]
            )

    def _train_step(self, x: Tensor, y: Tensor, index: Tensor) -> tuple[float, int] | None:
        """One optimiser step; (classification loss, correct count), or None when the loss is not finite."""
        self._enter_stage_for(self.step)
        assert self._optimizer is not None
        ex = self.executor
        batch = Batch(ex.input(x), y)
        if self._triplets is not None:
            positive, negative = self._triplets.draw(index)
            batch.positives = ex.input(_stack(self.splits.train, positive).to(self.device))
            batch.negatives = ex.input(_stack(self.splits.train, negative).to(self.device))
        terms = ex.forward(lambda: compute_loss(self.regime, self.model, batch))
        loss, classification, output = terms.total, terms.classification, terms.outputs
        if not torch.isfinite(loss):
            return None
        self._optimizer.zero_grad(set_to_none=True)
        ex.backward(loss)
        clip_value = self.regime.grad_clip
        clip = None if clip_value is None else (lambda: nn.utils.clip_grad_value_(self.params, clip_value))
        if ex.step(self._optimizer, clip) and self._scheduler is not None:
            self._scheduler.step()
        self.step += 1
        return float(classification.detach()), int((output.argmax(1) == y).sum())

    def run_epoch(self) -> float:
        """Train one epoch and append its curve entry; returns the seconds spent training.

        After a divergence this trains nothing and returns the (tiny) time spent; an epoch interrupted by
        the divergence adds no curve entry or epoch time, so those stay comparable between cases.
        """
        start = time.perf_counter()
        if self.diverged_step is not None:
            return time.perf_counter() - start
        if self.step >= self.total_steps:
            raise RuntimeError(f"the budget of {self.profile.train_epochs} epochs is spent")
        loss_sum, correct, seen = 0.0, 0, 0
        with self._scope, self.executor.scope():
            self.model.train()
            for x, y, index in self._loader:
                x, y = x.to(self.device), y.to(self.device)
                outcome = self._train_step(x, y, index)
                if outcome is None:
                    self.diverged_step = self.step
                    return time.perf_counter() - start
                loss_sum += outcome[0] * len(y)
                correct += outcome[1]
                seen += len(y)
            seconds = time.perf_counter() - start
            loss_val, accuracy_val = self._evaluate(self.splits.val)
        self.epoch_seconds.append(seconds)
        self.curve.append({
            "epoch": len(self.curve) + 1,
            "loss_train": loss_sum / seen,
            "accuracy_train": correct / seen,
            "loss_val": loss_val,
            "accuracy_val": accuracy_val,
            "seconds": seconds,
        })
        return seconds

    def fit(self) -> dict[str, Any]:
        """Run the rest of the budget (or until divergence) and return :meth:`result`."""
        while self.diverged_step is None and self.step < self.total_steps:
            self.run_epoch()
        return self.result()

    # -------------------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def _evaluate(self, dataset: Dataset) -> tuple[float, float]:
        was_training = self.model.training
        self.model.eval()
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=0):
            x, y = self.executor.input(x.to(self.device)), y.to(self.device)

            def forward(x: Tensor = x, y: Tensor = y) -> tuple[Tensor, Tensor]:
                output = self.model(x)  # the loss inside autocast too, where it runs in fp32
                return output, classification_loss(self.regime, output, y, reduction="sum")

            output, loss = self.executor.forward(forward)
            loss_sum += float(loss)
            correct += int((output.argmax(1) == y).sum())
            seen += len(y)
        self.model.train(was_training)
        return loss_sum / seen, correct / seen

    def evaluate(self, split: str | Dataset) -> tuple[float, float]:
        """(mean classification loss, accuracy) on a split, by name or as a dataset; eval mode, no grad."""
        if isinstance(split, str):
            named = self.splits.named()
            if split not in named:
                raise KeyError(f"no split {split!r}; this dataset has {sorted(named)}")
            split = named[split]
        with self._scope, self.executor.scope():
            return self._evaluate(split)

    def result(self) -> dict[str, Any]:
        """The train-kind fields of a :class:`bench.record.schema.Record` (accuracies as fractions)."""
        out: dict[str, Any] = {f"{kind}_{split}": None for split in SPLIT_NAMES for kind in ("accuracy", "loss")}
        if self.diverged_step is None and self.curve:
            last = self.curve[-1]
            for kind in ("accuracy", "loss"):
                out[f"{kind}_train"] = last[f"{kind}_train"]
                out[f"{kind}_val"] = last[f"{kind}_val"]
            for split, value in self._final_evaluation().items():
                if value is not None:
                    out[f"loss_{split}"], out[f"accuracy_{split}"] = value
        out.update(
            curve=[dict(entry) for entry in self.curve],
            seed=self.seed,
            train_steps=self.step,
            epochs=len(self.curve),
            dataset=self.splits.name,
            num_classes=self.splits.num_classes,
            diverged_step=self.diverged_step,
            status=self.status,
            samples_epoch_s=list(self.epoch_seconds),
            **self.weights_fields,
        )
        out.update(self.executor.record_fields())
        return out

    def close(self) -> None:
        """Release what the modes hold for this case (compiled code, its kernel cache); idempotent."""
        self.executor.close()

    def _final_evaluation(self) -> dict[str, tuple[float, float] | None]:
        # Evaluated once per model state: result() may be called more than once.
        if self._final is None or self._final[0] != self.step:
            named = self.splits.named()
            self._final = (self.step, {s: self.evaluate(s) if s in named else None for s in ("test", "test_deformed")})
        return self._final[1]



#: The per-seed fields of a train result; the top-level ones become the mean over the seeds that finished.
_PER_SEED = ("status", "diverged_step", "train_steps", "epochs",
             *(f"{kind}_{split}" for split in SPLIT_NAMES for kind in ("accuracy", "loss")))
#: Splits whose accuracy spread over seeds is recorded (``accuracy_<split>_spread``).
SPREAD_SPLITS: tuple[str, ...] = ("val", "test", "test_deformed")


def combine_seeds(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One train result from the results of one case under several seeds (:meth:`Trainer.result` each).

    Accuracies and losses are the mean over the seeds that finished (status ``ok``), and
    ``accuracy_<split>_spread`` the sample standard deviation of their accuracies (with two or more);
    ``per_seed`` keeps each seed's own values and ``seeds`` the seeds in order. The status is
    ``diverged`` when any seed diverged (the mean is then over the others, and ``per_seed`` says which),
    so that an unstable case is never shown as a clean mean. ``curve`` and the compile accounting are the
    first seed's (its compile is the cold one); epoch times and skipped fp16 steps are every seed's.
    A single result is returned as it is.
    """
    if not results:
        raise ValueError("no results to combine")
    if len(results) == 1:
        return dict(results[0])
    out = dict(results[0])
    out["seeds"] = [int(r["seed"]) for r in results]
    out["per_seed"] = [{"seed": r["seed"], **{k: r.get(k) for k in _PER_SEED}} for r in results]
    finished = [r for r in results if r["status"] == "ok"]
    for split in SPLIT_NAMES:
        for kind in ("accuracy", "loss"):
            key = f"{kind}_{split}"
            values = [r[key] for r in finished if r.get(key) is not None]
            out[key] = statistics.fmean(values) if values else None
    for split in SPREAD_SPLITS:
        values = [r[f"accuracy_{split}"] for r in finished if r.get(f"accuracy_{split}") is not None]
        out[f"accuracy_{split}_spread"] = statistics.stdev(values) if len(values) >= 2 else None
    diverged = [r for r in results if r["status"] != "ok"]
    out["status"] = diverged[0]["status"] if diverged else "ok"
    out["diverged_step"] = diverged[0]["diverged_step"] if diverged else None
    out["samples_epoch_s"] = [s for r in results for s in r.get("samples_epoch_s") or []]
    if any(r.get("amp_skipped_steps") is not None for r in results):
        out["amp_skipped_steps"] = sum(r.get("amp_skipped_steps") or 0 for r in results)
    return out


class SeededTraining:
    """One case trained under each of ``seeds`` in turn, one epoch per :meth:`run_epoch`, so that a
    benchmark can time ``len(seeds) * epochs`` rounds. Each seed's :class:`Trainer` is built when its
    first epoch starts and closed when its last one ends: only one model is held at a time."""

    def __init__(self, make: Callable[[int], Trainer], seeds: Sequence[int], epochs: int) -> None:
        if not seeds:
            raise ValueError("no seeds to train under")
        self._make = make
        self.seeds = list(seeds)
        self.epochs = epochs
        self.results: list[dict[str, Any]] = []
        self._trainer: Trainer | None = None
        self._epoch = 0

    @property
    def rounds(self) -> int:
        return len(self.seeds) * self.epochs

    def prepare(self) -> None:
        """Build the next seed's trainer if its first epoch is next: a benchmark's untimed setup, so that
        building the model (and loading its weights) is not timed as part of an epoch."""
        if len(self.results) == len(self.seeds):
            raise RuntimeError(f"all {len(self.seeds)} seeds are trained")
        if self._trainer is None:
            self._trainer = self._make(self.seeds[len(self.results)])
            self._epoch = 0

    def run_epoch(self) -> float:
        """Train the next epoch (of the current seed, or the first of the next one, built first if
        :meth:`prepare` was not called)."""
        self.prepare()
        assert self._trainer is not None
        seconds = self._trainer.run_epoch()
        self._epoch += 1
        if self._epoch == self.epochs:
            self._finish()
        return seconds

    def _finish(self) -> None:
        trainer, self._trainer = self._trainer, None
        assert trainer is not None
        try:
            self.results.append(trainer.result())
        finally:
            trainer.close()

    def result(self) -> dict[str, Any]:
        """The combined result of the seeds trained so far (:func:`combine_seeds`); a seed interrupted
        mid-way is finished first from the epochs it ran."""
        if self._trainer is not None:
            self._finish()
        return combine_seeds(self.results)

    def close(self) -> None:
        if self._trainer is not None:
            self._trainer.close()
            self._trainer = None
