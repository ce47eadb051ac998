"""How a step is executed: numeric precision, memory format and ``torch.compile`` (docs/modes.md).

:class:`~bench.record.modes.Modes` is what was asked for, checked against the device once, before any
case (:meth:`bench.measure.devices.Device.check_modes`). :class:`Executor` carries it out for one case,
and the timing harness (:mod:`bench.measure.harness`) and the trainer (:mod:`bench.measure.train`) both go
through it, so the step that is timed and the step that trains run under the same modes:

* ``prepare(model)`` converts the model's 4-D weights to channels-last and compiles it; ``inputs(batch)``
  converts the 4-D images of a batch. The weights stay fp32 in every precision (master weights).
* ``forward(fn)`` runs the model and the loss under autocast (bf16, fp16); ``backward(loss)`` scales
  the loss for fp16; ``step(optimizer)`` is the optimizer step, for fp16 ``GradScaler.step`` and
  ``update``, and says whether the step was taken (the scaler skips steps whose gradients overflowed).
* ``scope()`` holds the global numerics of the precision for a block (TF32 for matmuls and cuDNN, the
  float32 matmul precision), restores the caller's on exit, and reads back what the block ran under
  (:class:`Numerics`) for the record.
* With compile, the case starts from a reset dynamo and an empty inductor cache of its own, and
  :meth:`Executor.compile_stats` reports the seconds spent compiling and the recompilations, read from
  dynamo's own accounting. ``close()`` resets dynamo again, so no compiled graph outlives its case.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from bench.record.modes import Modes

if TYPE_CHECKING:  # torch only when a case runs
    import torch
    from torch import nn

    from bench.measure.objectives import Batch

T = TypeVar("T")


@dataclass(frozen=True)
class Numerics:
    """The global numeric settings a measurement ran under, read while it ran."""

    tf32_matmul: bool  # torch.backends.cuda.matmul.allow_tf32
    tf32_cudnn: bool  # torch.backends.cudnn.allow_tf32
    float32_matmul_precision: str  # torch.get_float32_matmul_precision()
    cudnn_deterministic: bool
    cudnn_benchmark: bool

    @classmethod
    def read(cls) -> Numerics:
        import torch

        return cls(
            tf32_matmul=bool(torch.backends.cuda.matmul.allow_tf32),
            tf32_cudnn=bool(torch.backends.cudnn.allow_tf32),
            float32_matmul_precision=_matmul_precision() or "mixed",
            cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
        )

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _matmul_precision() -> str | None:
    """``torch.get_float32_matmul_precision()``, or ``None`` where torch refuses to name one: it raises
    when the legacy flags (``allow_tf32``) and the per-backend ``fp32_precision`` API were mixed so that
    the backends disagree."""
    import torch

    try:
        return str(torch.get_float32_matmul_precision())
    except RuntimeError:
        return None


@contextlib.contextmanager
def numerics_for(precision: str) -> Iterator[None]:
    """TF32 on for ``tf32`` only; every other precision runs its fp32 ops in full fp32 (TF32 off,
    matmul precision "highest"), so that fp32 means IEEE fp32 whatever torch's defaults are (cuDNN
    allows TF32 by default). The caller's settings are restored on exit."""
    import torch

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (_matmul_precision(), matmul.allow_tf32, cudnn.allow_tf32)
    tf32 = precision == "tf32"
    # The precision first: setting it also sets matmul.allow_tf32, which the explicit flag then fixes.
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    matmul.allow_tf32, cudnn.allow_tf32 = tf32, tf32
    try:
        yield
    finally:
        if saved[0] is not None:
            torch.set_float32_matmul_precision(saved[0])
        matmul.allow_tf32, cudnn.allow_tf32 = saved[1], saved[2]


#: Keeps the autocast registrations below alive for the process (a Library unregisters when collected).
_LIBRARIES: list[Any] = []


def autocast_deform_conv(device_type: str) -> bool:
    """Give ``torchvision::deform_conv2d`` an autocast rule on ``device_type`` if it has none: run it in
    fp32 (inputs cast up, autocast off inside), as torchvision itself does on CUDA. Its CPU kernel has
    no bf16 version, so without this every deformable case fails under CPU bf16 autocast ("deformable_im2col
    not implemented for 'BFloat16'"). Returns whether a rule was added."""
    import torch

    key = {"cpu": "AutocastCPU", "cuda": "AutocastCUDA"}.get(device_type)
    name = "torchvision::deform_conv2d"
    try:
        import torchvision  # noqa: F401 - registers the op

        has_op = torch._C._dispatch_has_kernel(name)
    except (ImportError, RuntimeError):
        return False
    if key is None or not has_op or torch._C._dispatch_has_kernel_for_dispatch_key(name, key):
        return False
    lib = torch.library.Library("torchvision", "FRAGMENT")
    torch.library.register_autocast(name, device_type, torch.float32, lib=lib)
    _LIBRARIES.append(lib)
    return True


class CompileError(RuntimeError):
    """``torch.compile`` failed for this case (tracing, lowering or the C++/Triton compiler); the case
    is recorded with status ``error`` and this message, and the run goes on."""


def _is_compile_failure(exc: BaseException) -> bool:
    from torch._dynamo import exc as dynamo_exc

    failures: tuple[type[BaseException], ...] = (dynamo_exc.TorchDynamoException,)
    limit = getattr(dynamo_exc, "FailOnRecompileLimitHit", None)
    if limit is not None:
        failures += (limit,)
    return isinstance(exc, failures)


def _short(exc: BaseException, lines: int = 6, chars: int = 1500) -> str:
    """The first paragraph of a compiler's message: inductor appends advice, stack hints and the failing
    C++ source after it."""
    text = "\n".join(str(exc).strip().split("\n\n")[0].splitlines()[:lines])
    return text if len(text) <= chars else text[: chars - 1] + "…"


@dataclass(frozen=True)
class CompileStats:
    """Dynamo's accounting for one case since its reset."""

    #: Wall seconds spent compiling: dynamo's "entire_frame_compile" (tracing, AOTAutograd and
    #: inductor for each frame) plus "entire_backward_compile" (the lazily compiled backward graphs).
    seconds: float
    #: Frames compiled again after their guards failed (a new grad mode, a new input shape, ...).
    recompiles: int
    reasons: tuple[str, ...]


class Executor:
    """Runs one case's steps under ``modes`` on ``device`` (see the module docstring). The modes were
    checked against the device when the run started (:func:`bench.measure.session.check`)."""

    def __init__(self, modes: Modes, device: torch.device | str) -> None:
        import torch

        self.modes = modes
        self.device = torch.device(device)
        self.dtype: torch.dtype | None = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(modes.precision)
        if self.dtype is not None:
            autocast_deform_conv(self.device.type)
        self.scaler: torch.amp.GradScaler | None = (
            torch.amp.GradScaler(self.device.type) if modes.precision == "fp16" else None
        )
        self._scale = self.scaler.get_scale() if self.scaler is not None else None
        #: Optimizer steps the fp16 scaler skipped because the gradients held inf or NaN.
        self.skipped_steps = 0
        #: The numerics read inside the last :meth:`scope`; ``None`` before the first.
        self.observed: Numerics | None = None
        self._compile_scope = contextlib.ExitStack()
        self._live = False  # a compiled model of this executor may be running: dynamo's accounting is ours
        self._final: CompileStats | None = None  # the accounting as it was when the case closed

    @property
    def compiling(self) -> bool:
        return self.modes.compile != "none"

    @property
    def channels_last(self) -> bool:
        return self.modes.memory_format == "channels_last"

    # -- the case's model and inputs ---------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> nn.Module:
        """The model to run: its 4-D parameters and buffers channels-last if asked, compiled if asked.

        Only 4-D tensors have a channels-last layout: linear weights, ViT's 3-D position embedding and
        class token stay as they are, and so does a 5-D kernel bank (dynconv's varconv), on which
        ``Module.to(memory_format=torch.channels_last)`` would raise. Parameters stay the same objects
        (their data is replaced in place), so optimizers built from them see the new layout."""
        import torch

        if self.channels_last:
            with torch.no_grad():
                for tensor in [*model.parameters(), *model.buffers()]:
                    if tensor.dim() == 4:
                        tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
        if not self.compiling:
            return model
        self._begin_compile()
        mode = None if self.modes.compile == "default" else self.modes.compile
        return cast("nn.Module", torch.compile(model, mode=mode))

    def input(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` channels-last when asked and 4-D (anything else passes unchanged)."""
        import torch

        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def inputs(self, batch: Batch) -> Batch:
        """A batch whose images (and triplet positives and negatives) are in the memory format."""
        from bench.measure.objectives import Batch

        def conv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else self.input(t)

        return Batch(self.input(batch.images), batch.labels, conv(batch.positives), conv(batch.negatives))

    # -- one step ------------------------------------------------------------------------------------------
    def forward(self, fn: Callable[[], T]) -> T:
        """``fn()`` (the model and the loss) under autocast for bf16 and fp16. Under CUDA graphs
        (``reduce-overhead``) each call starts a new step for torch's graph trees, so that outputs a step
        still holds are never overwritten by a replay of another graph."""
        import torch

        if self.modes.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        try:
            if self.dtype is None:
                return fn()
            with torch.autocast(self.device.type, dtype=self.dtype):
                return fn()
        except Exception as exc:
            self._raise_compile_error(exc)
            raise

    def backward(self, loss: torch.Tensor) -> None:
        try:
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        except Exception as exc:
            self._raise_compile_error(exc)
            raise

    def step(self, optimizer: torch.optim.Optimizer, clip: Callable[[], object] | None = None) -> bool:
        """The optimizer step; ``clip`` (gradient clipping) runs on unscaled gradients first. Returns
        whether the step was taken: under fp16 ``GradScaler.step`` skips it when a gradient overflowed,
        and ``update`` then lowers the scale (it only rises after 2000 good steps), which is how a skip
        is seen without reading the scaler's internals."""
        if self.scaler is None:
            if clip is not None:
                clip()
            optimizer.step()
            return True
        if clip is not None:
            self.scaler.unscale_(optimizer)
            clip()
        self.scaler.step(optimizer)
        self.scaler.update()
        before, self._scale = self._scale, self.scaler.get_scale()
        taken = before is None or self._scale >= before
        if not taken:
            self.skipped_steps += 1
        return taken

    # -- global state --------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """The precision's numerics for the block; on exit, what the block ran under is read into
        :attr:`observed` (cuDNN's flags included: the trainer's determinism scope sets them)."""
        with numerics_for(self.modes.precision):
            try:
                yield
            finally:
                self.observed = Numerics.read()

    def _begin_compile(self) -> None:
        """A fresh start for this case: no compiled code or guards of another case (dynamo keys its
        cache on the code object, which cases with one model class share), no on-disk kernels (a
        cached compile would time the cache), and dynamo's timers and metrics at zero."""
        import torch._dynamo
        from torch._dynamo import utils as dynamo_utils

        self.close()
        try:
            _warm_compiler(self.device)
        except Exception as exc:
            self._raise_compile_error(exc)
            raise
        torch._dynamo.reset()  # also zeroes the timers behind calculate_time_spent()
        dynamo_utils.clear_compilation_metrics()
        limit = getattr(dynamo_utils, "set_compilation_metrics_limit", None)
        if limit is not None:
            # One entry per compiled frame; the default keeps 64, a case with graph breaks can have more.
            limit(100_000)
            self._compile_scope.callback(limit, getattr(dynamo_utils, "DEFAULT_COMPILATION_METRICS_LIMIT", 64))
        self._compile_scope.enter_context(_fresh_inductor_cache())
        self._live, self._final = True, None

    def compile_stats(self) -> CompileStats | None:
        """Compile seconds and recompilations since :meth:`prepare` (after :meth:`close`, as they were
        then); ``None`` without compile or before :meth:`prepare`."""
        if not self.compiling or not self._live:
            return self._final
        from torch._dynamo import utils as dynamo_utils

        seconds = float(dynamo_utils.calculate_time_spent().get("total_wall_time", 0.0))
        reasons = [str(m.recompile_reason) for m in dynamo_utils.get_compilation_metrics()
                   if getattr(m, "recompile_reason", None)]
        return CompileStats(seconds=seconds, recompiles=len(reasons), reasons=tuple(dict.fromkeys(reasons)))

    def _raise_compile_error(self, exc: Exception) -> None:
        """Raise a :class:`CompileError` in place of a compiler's exception; return for any other."""
        if self.compiling and not isinstance(exc, CompileError) and _is_compile_failure(exc):
            raise CompileError(
                f"torch.compile(mode={self.modes.compile!r}) failed: {type(exc).__name__}: {_short(exc)}"
            ) from exc

    def close(self) -> None:
        """Forget this case's compiled code and its inductor cache (idempotent); the compile accounting
        is kept for :meth:`record_fields` (the reset zeroes dynamo's)."""
        if self._live:
            self._final = self.compile_stats()
            self._live = False
        self._compile_scope.close()
        if self.compiling:
            import torch._dynamo

            torch._dynamo.reset()

    # -- results -------------------------------------------------------------------------------------------
    def record_fields(self) -> dict[str, Any]:
        """The mode fields of a :class:`bench.record.schema.Record`: the modes, the numerics read inside the
        measurement, compile accounting and skipped fp16 steps."""
        out: dict[str, Any] = dict(self.modes.fields())
        if self.observed is not None:
            out.update(self.observed.fields())
        stats = self.compile_stats()
        if stats is not None:
            out.update(compile_time_s=stats.seconds, compile_recompiles=stats.recompiles,
                       compile_recompile_reasons=list(stats.reasons))
        if self.scaler is not None:
            out["amp_skipped_steps"] = self.skipped_steps
        return out


#: Devices (by type) whose compiler stack has been warmed up in this process.
_WARMED: set[str] = set()


def _warm_compiler(device: torch.device) -> None:
    """Compile and run a one-layer model once per process and device type, before any case: the first
    compile of a process also imports inductor's modules, starts its compile workers and probes the C++
    compiler, seconds that would otherwise be charged to whichever case happens to run first."""
    import torch
    from torch import nn

    if device.type in _WARMED:
        return
    _WARMED.add(device.type)
    # its own RNG stream: the case's seeded streams must not depend on whether this ran first
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), _fresh_inductor_cache():
        try:
            # a convolution and a fused elementwise kernel, forward and backward: inductor generates
            # and compiles kernels of its own (a lone convolution would only call ATen's)
            layer = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.ReLU()).to(device)
            compiled = torch.compile(layer)
            compiled(torch.randn(2, 1, 4, 4, device=device)).square().mean().backward()
        finally:
            torch._dynamo.reset()


@contextlib.contextmanager
def _fresh_inductor_cache() -> Iterator[None]:
    """An empty inductor cache directory for the block, removed afterwards (torch's own helper, under
    the name it has in this torch)."""
    from torch._inductor import utils as inductor_utils

    fresh = getattr(inductor_utils, "fresh_cache", None) or getattr(inductor_utils, "fresh_inductor_cache", None)
    if fresh is None:
        yield
        return
    with fresh():
        yield
