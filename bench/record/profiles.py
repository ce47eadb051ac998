"""Profiles: how hard to measure (docs/profiles.md says why these settings). The profile's name is
recorded in every result.

``smoke`` is the default without CUDA: small inputs and a training budget of seconds, so that all 32
cases finish on a 2-core CPU in a few minutes. ``full`` is the default with CUDA: native inputs, report-like
batch sizes, enough rounds for stable medians, and a training budget of minutes per case.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: The native input the training size is stated for: ImageNet's 224 px, which 26 of the 32 cases use.
REFERENCE_INPUT = 224


@dataclass(frozen=True)
class Profile:
    name: str
    #: Timing input is ``min(native, max_input_size)``; ``None`` keeps every case at its native size.
    max_input_size: int | None
    batch_size: int
    warmup_rounds: int
    rounds: int
    # fixed-budget training on the embedded dataset
    #: Training resolution of a case whose native input is 224 px; other cases scale with their native
    #: size (:meth:`train_input_size`), so that resolution variants stay different experiments.
    train_image_size: int
    train_samples: int  # training split size; val/test are a quarter each
    train_epochs: int
    train_batch_size: int
    #: ``bench ab``: rounds per side, taken in alternation. A paired test needs more rounds than one
    #: run's median does: with k pairs the smallest signed-rank p is 2**-k, and Holm over a run's ~190
    #: time metrics asks for p < 0.05/190. With a per-pair spread of 0.1 (log), 22 pairs catch a 10 %
    #: slowdown 4 times in 5 (README "Catching regressions"); smoke takes 24, full 30.
    paired_rounds: int = 30
    #: Warm-up runs until ``warmup_rounds`` steps *and* this many seconds have passed: a GPU that was
    #: idle starts at low clocks and reaches its boost clocks only after some time under load, which a
    #: count of fast steps can end before (docs/profiles.md).
    warmup_min_s: float = 0.0
    #: Energy per step and per inference batch is read over a window of at least this many seconds and
    #: rounds: NVML's energy counter refreshes every 20–100 ms, so the window bounds the error at
    #: refresh/window (5 s: under 2 %); ten rounds keep one slow round below a tenth (docs/efficiency.md).
    #: Where no counter is readable (no RAPL access, NVML NotSupported) no time is spent.
    energy_min_s: float = 5.0
    energy_min_rounds: int = 10

    def input_size(self, native: int) -> int:
        return native if self.max_input_size is None else min(native, self.max_input_size)

    def train_input_size(self, native: int) -> int:
        """The side a case of native input ``native`` trains at: ``train_image_size`` scaled by native/224.

        MobileNet's resolution multiplier (224, 192, 160, 128 px) is the experiment those cases exist for;
        one training size for all would run it four times over. Rounded to whole pixels, never below 8.
        """
        return max(8, round(self.train_image_size * native / REFERENCE_INPUT))

    def override(self, **changes: float | None) -> Profile:
        """The same profile with some fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


PROFILES: dict[str, Profile] = {
    # Batch 2, not 1: BatchNorm in train mode needs more than one value per channel at 1×1 maps.
    # Training: 512 images × 2 epochs in batches of 16 = 64 optimizer steps (128-image val and test splits)
    # at 32 px for a 224 px case (MobileNet's 192/160/128 px variants at 27/23/18 px, report 002's 124 px
    # cases at 18 px). The former 24 steps (192 images) left 11 of the 21 cases that train a randomly
    # initialised network at or near chance: BatchNorm networks (dogbreed_dsc, every MobileNet,
    # dynconv_compact_dcn_cbam) had moved their train accuracy but not yet their running statistics, and
    # scored chance in eval mode. At 64 steps each of them reaches 4.1-6.1× chance in the default run
    # (2.6× was the lowest in trial runs); 96 steps gave 3.5-7.8× for 1.5× the time. Steps, not epochs or images, are what these
    # networks need, and a step costs the same in every epoch, so the budget is set in steps.
    # The whole default run (timing and training of the 32 cases) took 323 s on 2 cores (173 s at 24 steps;
    # training 233 s of it, 96 s before); ViT-B/16's three
    # cases are half of the training (115 of 233 s; 86 M parameters under Adam; TCEL runs three forwards a step).
    # EfficientNet-B0 from random initialisation does not leave chance at report 003's assumed Adam lr 1e-4
    # at any budget tried (≤1.6× up to 384 steps); docs/profiles.md says why (its head's initial scale).
    # No minimum warm-up time: a CPU's clocks follow load within milliseconds, and smoke must stay short.
    "smoke": Profile(
        "smoke", max_input_size=64, batch_size=2, warmup_rounds=1, rounds=5,
        train_image_size=32, train_samples=512, train_epochs=2, train_batch_size=16,
        paired_rounds=24, warmup_min_s=0.0,
        # 1 s windows: a CPU with readable RAPL (~1 ms updates) adds ~64 s over 32 cases, not ~5 min
        energy_min_s=1.0, energy_min_rounds=10,
    ),
    # Training: unchanged; 4096 × 10 epochs at 64 px is minutes per case on a GPU (ViT-B/16 sees 17 tokens)
    # and generating the embedded set takes ~3 s on a CPU.
    # Warm-up: 5 steps of a small case take tens of milliseconds on a GPU, which can end before an idle
    # GPU has left its idle clocks; at least 1 s of steps gives the clocks time to ramp under load, for
    # ~30 s over all 32 cases. Not measured on a GPU yet: the SM clock read right before the timed rounds
    # shows whether it suffices (docs/profiles.md).
    "full": Profile(
        "full", max_input_size=None, batch_size=32, warmup_rounds=5, rounds=30,
        train_image_size=64, train_samples=4096, train_epochs=10, train_batch_size=64,
        paired_rounds=30, warmup_min_s=1.0,
    ),
}


def default_profile_name(cuda_available: bool) -> str:
    return "full" if cuda_available else "smoke"


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; choose from {sorted(PROFILES)}") from None
