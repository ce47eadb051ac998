"""Where a benchmark runs, behind one small interface: :class:`CpuDevice` and :class:`CudaDevice`.

A device knows how to time a callable honestly, how to measure the peak tensor memory of a phase, which
global settings a measurement needs (restored afterwards), and how to describe itself for the results'
provenance.

Timing. CPU work is synchronous, so a ``perf_counter`` pair around the call is the time. CUDA work is
asynchronous: the time is taken between two CUDA events recorded on the current stream around the call,
and the end event is synchronised before it is read.

Memory. ``mem_<phase>_bytes`` is the peak of tensor memory during the phase *above what was live when the
phase began*. CUDA reads it from the caching allocator (``reset_peak_memory_stats`` at phase start,
``max_memory_allocated`` − ``memory_allocated`` at entry). CPU has no allocator statistics, so
:class:`TensorMemoryTracker` watches every op at the dispatcher and sums the storages it creates while
they live; that is tensor memory, not process RSS. The tracker slows ops down, so memory is measured in
its own round, never inside a timed one.

Allocation. PyTorch's CPU tensors come straight from ``malloc``. glibc serves blocks above its mmap
threshold (128 KiB, rising on its own up to 32 MiB) with fresh pages and unmaps them on ``free``, so each
training step page-faults its activations and gradients anew, at a cost that depends on the threshold's
history and on the host. CUDA's caching allocator keeps memory between steps; :func:`steady_malloc` gives
the CPU the same steady state (see its docstring for what was measured).

The CUDA backend, cuDNN flags and NVML are injected so that the CUDA path is testable without a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

T = TypeVar("T")


@dataclass
class Peak:
    """Filled in when a :meth:`Device.peak_memory` block exits."""

    bytes: int | None = None


class Device(Protocol):
    kind: str
    torch_device: torch.device
    #: Intra-op CPU threads the measurement runs with (pinned by :meth:`settings`).
    threads: int

    def timed(self, fn: Callable[[], T]) -> tuple[float, T]:
        """Run ``fn`` once; return (seconds, its result)."""
        ...

    def synchronize(self) -> None: ...

    def peak_memory(self, *owners: Any) -> contextlib.AbstractContextManager[Peak]:
        """Measure the peak tensor memory above the level at entry, over the block. ``owners``
        (modules, optimizers, tensors) are what is already live; the CPU tracker needs them named."""
        ...

    def settings(self) -> contextlib.AbstractContextManager[None]:
        """Global settings a measurement needs, restored on exit."""
        ...

    def info(self) -> dict[str, Any]:
        """Provenance for the results' machine_info."""
        ...

    def is_oom(self, exc: BaseException) -> bool: ...


# glibc's mallopt parameters and their defaults (malloc/malloc.h, mallopt(3)).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}
_NO_TRIM = 1 << 40  # larger than any heap this process will grow

MallocMode = Literal["steady", "system"]
MALLOC_MODES: tuple[MallocMode, ...] = ("steady", "system")


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return getattr(ctypes.CDLL(None), "mallopt", None)


@contextlib.contextmanager
def steady_malloc(mallopt: Callable[[int, int], int] | None = None) -> Iterator[bool]:
    """Within the block, glibc serves every block from its heap and never gives memory back
    (``M_MMAP_MAX=0``, ``M_TRIM_THRESHOLD`` beyond reach), so that steps after the warm-up reuse the
    same pages instead of page-faulting fresh ones. Yields whether that took effect (only on glibc).

    Measured on a 2-vCPU VM (smoke profile, 4 processes each): with glibc's defaults the optimizer step
    of ``flowers_resnet18`` took 36–156 ms and its backward pass 75–140 ms depending on the process;
    with this setting 29–34 ms and 43–52 ms. jemalloc and tcmalloc, which Intel recommends for PyTorch
    on CPU, behave alike. On exit the defaults are restored, except that glibc's dynamic mmap
    threshold stays off for the rest of the process (setting it is what disables it).
    """
    mallopt = mallopt if mallopt is not None else _glibc_mallopt()
    if mallopt is None:
        yield False
        return
    # mallopt returns 1 on success, 0 on error
    applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NO_TRIM))
    try:
        yield applied
    finally:
        for param, value in _GLIBC_DEFAULTS.items():
            mallopt(param, value)


class CpuDevice:
    """The CPU, with the intra-op thread count pinned for the measurement and, by default, glibc
    kept from returning memory between steps (:func:`steady_malloc`)."""

    kind = "cpu"

    def __init__(self, threads: int | None = None, malloc: MallocMode = "steady",
                 mallopt: Callable[[int, int], int] | None = None) -> None:
        if malloc not in MALLOC_MODES:
            raise ValueError(f"unknown malloc mode {malloc!r}; choose from {MALLOC_MODES}")
        self.torch_device = torch.device("cpu")
        self.threads = threads or torch.get_num_threads()
        self.malloc = malloc
        self._mallopt = mallopt
        self._malloc_applied: bool | None = None

    def timed(self, fn: Callable[[], T]) -> tuple[float, T]:
        start = time.perf_counter()
        result = fn()
        return time.perf_counter() - start, result

    def synchronize(self) -> None:
        pass

    @contextlib.contextmanager
    def peak_memory(self, *owners: Any) -> Iterator[Peak]:
        peak = Peak()
        tracker = TensorMemoryTracker(self.torch_device.type)
        with tracker:
            yield peak
        peak.bytes = tracker.peak

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            if self.malloc == "steady":
                with steady_malloc(self._mallopt) as applied:
                    self._malloc_applied = applied
                    yield
            else:
                yield
        finally:
            torch.set_num_threads(previous)

    def malloc_info(self) -> str:
        """What the allocator did during the measurements, for provenance."""
        if self.malloc == "system":
            return "system"
        if self._malloc_applied is None:
            return "steady" if (self._mallopt or _glibc_mallopt()) is not None else "system (steady needs glibc)"
        return "steady" if self._malloc_applied else "system (mallopt refused)"

    def info(self) -> dict[str, Any]:
        return {
            "device": "cpu",
            "device_name": _cpu_name(),
            "threads": self.threads,
            "cpu_count": os.cpu_count(),
            "malloc": self.malloc_info(),
            "gpu": None,
        }

    def is_oom(self, exc: BaseException) -> bool:
        # The CPU allocator raises a plain RuntimeError naming itself.
        return isinstance(exc, MemoryError) or (
            isinstance(exc, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(exc)
        )


class CudaDevice:
    """One CUDA device. ``cuda``, ``cudnn`` and ``nvml`` default to torch.cuda, torch.backends.cudnn
    and pynvml (nvidia-ml-py); tests pass fakes."""

    kind = "cuda"

    def __init__(
        self,
        index: int = 0,
        *,
        cuda: Any = None,
        cudnn: Any = None,
        nvml: Any = None,
        cudnn_benchmark: bool = True,
        threads: int | None = None,
    ) -> None:
        self.index = index
        self.cuda: Any = cuda if cuda is not None else torch.cuda
        self.cudnn: Any = cudnn if cudnn is not None else torch.backends.cudnn
        self._nvml = nvml
        self.cudnn_benchmark = cudnn_benchmark
        self.threads = threads or torch.get_num_threads()
        self.torch_device = torch.device("cuda", index)

    def timed(self, fn: Callable[[], T]) -> tuple[float, T]:
        start = self.cuda.Event(enable_timing=True)
        end = self.cuda.Event(enable_timing=True)
        start.record()
        result = fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0, result  # elapsed_time is in milliseconds

    def synchronize(self) -> None:
        self.cuda.synchronize(self.index)

    @contextlib.contextmanager
    def peak_memory(self, *owners: Any) -> Iterator[Peak]:
        peak = Peak()  # the allocator sees everything; owners need not be named
        self.cuda.synchronize(self.index)
        self.cuda.reset_peak_memory_stats(self.index)
        base = self.cuda.memory_allocated(self.index)
        yield peak
        self.cuda.synchronize(self.index)
        peak.bytes = int(self.cuda.max_memory_allocated(self.index) - base)

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        previous_benchmark = self.cudnn.benchmark
        previous_threads = torch.get_num_threads()
        self.cudnn.benchmark = self.cudnn_benchmark
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            self.cudnn.benchmark = previous_benchmark
            torch.set_num_threads(previous_threads)

    def nvml(self) -> Any:
        if self._nvml is None:
            import pynvml  # nvidia-ml-py

            self._nvml = pynvml
        return self._nvml

    def device_memory_used(self) -> int | None:
        """NVML's view of memory in use on the device (all processes, incl. the caching allocator)."""
        with _nvml_session(self.nvml()) as nvml:
            if nvml is None:
                return None
            handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
            return int(nvml.nvmlDeviceGetMemoryInfo(handle).used)

    def info(self) -> dict[str, Any]:
        props = self.cuda.get_device_properties(self.index)
        gpu: dict[str, Any] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_total_bytes": int(props.total_memory),
            "cudnn_benchmark": self.cudnn_benchmark,
        }
        with _nvml_session(self.nvml()) as nvml:
            if nvml is not None:
                handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
                gpu.update(
                    driver=_text(nvml.nvmlSystemGetDriverVersion()),
                    nvml_name=_text(nvml.nvmlDeviceGetName(handle)),
                    memory_total_bytes=int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
                    clock_sm_mhz=int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
                    clock_mem_mhz=int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
                    clock_sm_max_mhz=int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM)),
                )
            else:
                gpu["driver"] = None
        return {
            "device": "cuda",
            "device_name": props.name,
            "threads": self.threads,
            "cpu_count": os.cpu_count(),
            "gpu": gpu,
        }

    def is_oom(self, exc: BaseException) -> bool:
        oom_type = getattr(self.cuda, "OutOfMemoryError", None)
        return (oom_type is not None and isinstance(exc, oom_type)) or (
            isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
        )


class TensorMemoryTracker(TorchDispatchMode):
    """Peak bytes of tensor storages created by ops inside the block and alive at the same time.

    Every op goes through ``__torch_dispatch__`` (autograd's backward ops included); each new output
    storage is counted until it dies (a weak storage reference that expires), and the peak of the live
    sum is kept. What was allocated before the block is not counted, which is the "above the level at
    entry" convention of the CUDA path. Kernel-internal scratch buffers that never become tensors are not
    seen. PyTorch's own ``torch.distributed._tools.mem_tracker.MemTracker`` does the same with module
    attribution on top, but refuses frozen modules and a module called more than once per step
    (the triplet loss calls the model three times), so it cannot measure every case.
    """

    def __init__(self, device_type: str = "cpu") -> None:
        super().__init__()
        self.device_type = device_type
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        # storages that existed before the block (seen as op inputs first); views of them are not new
        self.external: dict[int, StorageWeakRef] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        self._sweep()  # first, so that an address freed and reused is not mistaken for a live storage
        for storage in self._storages((args, kwargs)):
            key = storage._cdata
            if key not in self.live and key not in self.external:
                self.external[key] = StorageWeakRef(storage)
        out = func(*args, **kwargs)
        for storage in self._storages(out):
            key = storage._cdata
            if key not in self.live and key not in self.external:
                nbytes = storage.nbytes()
                self.live[key] = (StorageWeakRef(storage), nbytes)
                self.current += nbytes
        self.peak = max(self.peak, self.current)
        return out

    def _storages(self, tree: Any) -> Iterator[torch.UntypedStorage]:
        for t in tree_leaves(tree):
            if isinstance(t, torch.Tensor) and t.device.type == self.device_type:
                yield t.untyped_storage()

    def _sweep(self) -> None:
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(key)[1]
        for key in [k for k, ref in self.external.items() if ref.expired()]:
            del self.external[key]


@contextlib.contextmanager
def _nvml_session(nvml: Any) -> Iterator[Any]:
    """Init/shutdown around a block; yields None when NVML is unusable (no driver), so provenance
    degrades to what torch knows instead of failing the run."""
    error_type = getattr(nvml, "NVMLError", None)
    try:
        nvml.nvmlInit()
    except Exception as exc:
        if error_type is not None and isinstance(exc, error_type):
            yield None
            return
        raise
    try:
        yield nvml
    finally:
        nvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def make_device(kind: str | None = None, *, threads: int | None = None, malloc: MallocMode = "steady") -> Device:
    """``cuda`` when asked for or available, else ``cpu``. Asking for CUDA without it is an error.
    ``malloc`` applies to the CPU device only (CUDA tensors come from the caching allocator)."""
    if kind is None:
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "cpu":
        return CpuDevice(threads, malloc=malloc)
    if kind.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {kind!r} requested but torch.cuda.is_available() is False")
        index = int(kind.split(":", 1)[1]) if ":" in kind else 0
        return CudaDevice(index, threads=threads)
    raise ValueError(f"unknown device {kind!r}; use 'cpu', 'cuda' or 'cuda:N'")
