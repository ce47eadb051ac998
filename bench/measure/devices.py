"""Where a benchmark runs, behind one small interface: :class:`CpuDevice` and :class:`CudaDevice`.

A device knows how to time a callable honestly, how to measure the peak tensor memory of a phase, which
global settings a measurement needs (restored afterwards), and how to describe itself for the results'
provenance.

Timing. CPU work is synchronous, so a ``perf_counter`` pair around the call is the time. CUDA work is
asynchronous: the time is taken between two CUDA events recorded around the call on the current stream
*of the measured device* (made current for the whole measurement), and the end event is synchronised
before it is read.

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

Telemetry. NVML gives clocks, temperature, power and clock-event (throttle) reasons, read per case
(:meth:`CudaDevice.telemetry`); the NVML device is found by UUID, since NVML's numbering is PCI order
and ignores ``CUDA_VISIBLE_DEVICES``. Any NVML error, at init or after it (NotSupported and NoPermission
are common on vGPUs and in containers), makes the fields it concerns ``None`` with the reason recorded:
it never fails a measured case.

The CUDA backend, cuDNN flags and NVML are injected so that the CUDA path is testable without a GPU
(``tests/fake_cuda.py`` models current devices, per-device streams and events, and NVML's own order).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from bench.measure import nvml as nvml_api
from bench.measure.efficiency import CPU_REASON, NoPeak, peak_for
from bench.measure.efficiency import Peak as DatasheetPeak
from bench.measure.energy import EnergyCounter, Unavailable, nvml_counter, rapl_counter
from bench.record.modes import FLAGS, Modes, ModeUnavailable
from bench.record.options import MALLOC_MODES, MallocMode

T = TypeVar("T")


@dataclass
class Peak:
    """Filled in when a :meth:`Device.peak_memory` block exits."""

    bytes: int | None = None


@dataclass
class StepPeak:
    """Filled in when a :meth:`Device.step_memory` block exits. ``allocated``: the absolute peak of
    tensor memory over the block (weights, optimizer state and activations: whether a batch fits);
    ``reserved``: the caching allocator's reserved peak (CUDA only)."""

    allocated: int | None = None
    reserved: int | None = None


class Device(Protocol):
    kind: str
    torch_device: torch.device
    #: Intra-op CPU threads the measurement runs with (pinned by :meth:`settings`).
    threads: int
    #: Whether fixed-seed training here runs with deterministic algorithms, bit for bit
    #: (:class:`bench.measure.train.Determinism` says why CUDA does not).
    bitwise_deterministic: bool

    def check_modes(self, modes: Modes) -> None:
        """Raise :class:`~bench.record.modes.ModeUnavailable`, naming the option and why, when this device
        cannot run ``modes`` (fp16 on the CPU)."""
        ...

    def peak(self, precision: str) -> DatasheetPeak | NoPeak:
        """The datasheet's dense peak for ``precision`` on this device, or why there is none."""
        ...

    def rng_state(self) -> list[torch.Tensor]:
        """This device's own random-number generator states (none on the CPU: torch's CPU generator is
        the process's)."""
        ...

    def set_rng_state(self, states: list[torch.Tensor]) -> None:
        """Restore what :meth:`rng_state` returned."""
        ...

    def timed(self, fn: Callable[[], T]) -> tuple[float, T]:
        """Run ``fn`` once; return (seconds, its result)."""
        ...

    def synchronize(self) -> None: ...

    def stopwatch(self) -> Stopwatch:
        """Marks in time that cost no synchronisation (for the per-module breakdown, bench/measure/modules.py)."""
        ...

    def peak_memory(self, *owners: Any) -> contextlib.AbstractContextManager[Peak]:
        """Measure the peak tensor memory above the level at entry, over the block. ``owners``
        (modules, optimizers, tensors) are what is already live; the CPU tracker needs them named."""
        ...

    def step_memory(self, *owners: Any) -> contextlib.AbstractContextManager[StepPeak]:
        """Measure the absolute peak of tensor memory over the block, what ``owners`` (modules,
        optimizers, batches) hold at entry included, and the allocator's reserved peak where there is one."""
        ...

    def settings(self) -> contextlib.AbstractContextManager[None]:
        """Global settings a measurement needs, restored on exit."""
        ...

    def telemetry(self) -> dict[str, Any] | None:
        """Clocks, temperature, power and throttling now (CUDA); ``None`` where the device has none."""
        ...

    def release_cached_memory(self) -> None:
        """Return cached allocator blocks between cases (CUDA); a no-op elsewhere."""
        ...

    def energy_counter(self) -> contextlib.AbstractContextManager[EnergyCounter | Unavailable]:
        """This device's cumulative energy counter over the block, or why there is none."""
        ...

    def info(self) -> dict[str, Any]:
        """Provenance for the results' machine_info."""
        ...

    def is_oom(self, exc: BaseException) -> bool: ...


class Stopwatch(Protocol):
    """Points in time marked while work runs, read once it has finished: :meth:`mark` never waits for
    the device, so marking inside a forward or backward pass does not change how its work overlaps.
    Call :meth:`settle` (waits for the device) before :meth:`seconds`."""

    def mark(self) -> Any: ...

    def settle(self) -> None: ...

    def seconds(self, start: Any, end: Any) -> float: ...


class CpuStopwatch:
    """CPU work is synchronous: a mark is ``perf_counter``."""

    def mark(self) -> float:
        return time.perf_counter()

    def settle(self) -> None:
        pass

    def seconds(self, start: float, end: float) -> float:
        return end - start


class CudaStopwatch:
    """A mark is a CUDA event recorded on the device's current stream *at the time of the mark* (autograd
    runs each backward node on the stream of its forward op): the time at which the work queued on that
    stream before the mark ends. Nothing waits until :meth:`settle`, which synchronises the device."""

    def __init__(self, cuda: Any, index: int) -> None:
        self.cuda, self.index = cuda, index

    def mark(self) -> Any:
        event = self.cuda.Event(enable_timing=True)
        event.record(self.cuda.current_stream(self.index))
        return event

    def settle(self) -> None:
        self.cuda.synchronize(self.index)

    def seconds(self, start: Any, end: Any) -> float:
        return float(start.elapsed_time(end)) / 1000.0  # elapsed_time is in milliseconds


# glibc's mallopt parameters and their defaults (malloc/malloc.h, mallopt(3)).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}
_NO_TRIM = 1 << 40  # larger than any heap this process will grow

#: What each mode is on the CPU, when it cannot run there: the usage error names the option and why.
_CPU_UNSUPPORTED = {
    ("precision", "tf32"): "TF32 is a tensor-core format of NVIDIA GPUs (Ampere and later); the CPU has no TF32 "
                           "kernels. Use fp32 or bf16 on the CPU",
    ("precision", "fp16"): "fp16 autocast with a loss-scaling GradScaler is the GPU recipe; on the CPU the "
                           "low-precision format with hardware support is bf16, which needs no loss scaling. "
                           "Use fp32 or bf16 on the CPU",
    ("compile", "reduce-overhead"): "'reduce-overhead' means CUDA graphs, and inductor skips them on the CPU "
                                    "(\"skipping cudagraphs due to cpu device\"): the run would be 'default' "
                                    "recorded under another name. Use --bench-compile default on the CPU",
}


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
    bitwise_deterministic = True

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

    def check_modes(self, modes: Modes) -> None:
        for name in ("precision", "compile"):
            reason = _CPU_UNSUPPORTED.get((name, getattr(modes, name)))
            if reason is not None:
                raise ModeUnavailable(f"{FLAGS[name]} {getattr(modes, name)} is not available on the cpu: {reason}")

    def peak(self, precision: str) -> NoPeak:
        return NoPeak(CPU_REASON)

    def rng_state(self) -> list[torch.Tensor]:
        return []

    def set_rng_state(self, states: list[torch.Tensor]) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def stopwatch(self) -> CpuStopwatch:
        return CpuStopwatch()

    @contextlib.contextmanager
    def peak_memory(self, *owners: Any) -> Iterator[Peak]:
        peak = Peak()
        tracker = TensorMemoryTracker(self.torch_device.type)
        with tracker:
            yield peak
        peak.bytes = tracker.peak

    @contextlib.contextmanager
    def step_memory(self, *owners: Any) -> Iterator[StepPeak]:
        peak = StepPeak()
        tracker = TensorMemoryTracker(self.torch_device.type, initial=owned_storages(*owners))
        with tracker:
            yield peak
        peak.allocated = tracker.peak  # no caching allocator on the CPU: nothing is reserved beyond it

    def telemetry(self) -> None:
        return None  # VMs do not expose meaningful per-core clocks or throttling

    def release_cached_memory(self) -> None:
        pass

    @contextlib.contextmanager
    def energy_counter(self) -> Iterator[EnergyCounter | Unavailable]:
        yield rapl_counter()  # the CPU packages' RAPL zones, where the kernel lets this user read them

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


#: Clock-event reasons (NVML's ``nvmlClocksEventReason*``, formerly ``nvmlClocksThrottleReason*``) that
#: mean the GPU ran slower than it was asked to: power capping, thermal or hardware slowdown. Idle,
#: application clocks, sync boost and display clocks are settings or states, not throttling.
THROTTLE_REASONS: dict[str, int] = {
    "sw_power_cap": 0x04,
    "hw_slowdown": 0x08,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
}
#: Every reason NVML names, for the record (values from nvml.h / pynvml).
CLOCK_EVENT_REASONS: dict[str, int] = {
    "gpu_idle": 0x01, "applications_clocks_setting": 0x02, "sync_boost": 0x10,
    "display_clock_setting": 0x100, **THROTTLE_REASONS,
}
#: Allocation failures that are out-of-memory under another name: cuDNN and cuBLAS allocate workspace
#: outside the caching allocator and report failure with their own status codes.
_CUDA_OOM_MARKERS = ("out of memory", "CUDNN_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_ALLOC_FAILED")


@dataclass(frozen=True)
class NvmlDevice:
    """NVML opened for one CUDA device: the module and the device's handle, or why there is none."""

    nvml: Any = None
    handle: Any = None
    reason: str | None = None


class CudaDevice:
    """One CUDA device, ``cuda:index`` in torch's (``CUDA_VISIBLE_DEVICES``-relative) numbering.

    Everything runs with this device current (:meth:`settings`), and times come from events recorded
    on *this device's* current stream: events recorded on another device's stream would measure that
    device's idle queue, and their ``synchronize`` would not wait for this one.

    NVML numbers GPUs in PCI order and ignores ``CUDA_VISIBLE_DEVICES``; CUDA (by default) numbers the
    visible ones fastest first. The two are matched by UUID, never by index.

    ``cuda``, ``cudnn`` and ``nvml`` default to torch.cuda, torch.backends.cudnn and pynvml
    (nvidia-ml-py); tests pass fakes.
    """

    kind = "cuda"
    # cuDNN is made deterministic for training, but deterministic algorithms are not forced
    # (train.Determinism says why): run-to-run stable, not guaranteed bitwise
    bitwise_deterministic = False

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
        with self.cuda.device(self.index):
            stream = self.cuda.current_stream(self.index)
            start = self.cuda.Event(enable_timing=True)
            end = self.cuda.Event(enable_timing=True)
            start.record(stream)
            result = fn()
            end.record(stream)
            end.synchronize()
        return start.elapsed_time(end) / 1000.0, result  # elapsed_time is in milliseconds

    def synchronize(self) -> None:
        self.cuda.synchronize(self.index)

    def check_modes(self, modes: Modes) -> None:
        pass  # every mode is a CUDA recipe; a GPU without bf16 units fails the case, naming the op

    def peak(self, precision: str) -> DatasheetPeak | NoPeak:
        return peak_for(str(self.cuda.get_device_properties(self.index).name), precision, device_type="cuda")

    def rng_state(self) -> list[torch.Tensor]:
        return [self.cuda.get_rng_state(self.index)]

    def set_rng_state(self, states: list[torch.Tensor]) -> None:
        for state in states:
            self.cuda.set_rng_state(state, self.index)

    def stopwatch(self) -> CudaStopwatch:
        return CudaStopwatch(self.cuda, self.index)

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
    def step_memory(self, *owners: Any) -> Iterator[StepPeak]:
        peak = StepPeak()
        self.cuda.synchronize(self.index)
        self.cuda.reset_peak_memory_stats(self.index)
        yield peak
        self.cuda.synchronize(self.index)
        peak.allocated = int(self.cuda.max_memory_allocated(self.index))
        peak.reserved = int(self.cuda.max_memory_reserved(self.index))

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        previous_benchmark = self.cudnn.benchmark
        previous_threads = torch.get_num_threads()
        # Current device first: anything below that creates a CUDA context or picks a default stream
        # must do it on this GPU, not on GPU 0.
        with self.cuda.device(self.index):
            self.cudnn.benchmark = self.cudnn_benchmark
            torch.set_num_threads(self.threads)
            try:
                yield
            finally:
                self.cudnn.benchmark = previous_benchmark
                torch.set_num_threads(previous_threads)

    def release_cached_memory(self) -> None:
        """Give cached blocks back between cases, so that one case's reserved memory is not the next's."""
        self.cuda.synchronize(self.index)
        with self.cuda.device(self.index):
            self.cuda.empty_cache()

    # -- NVML ----------------------------------------------------------------------------------------
    def nvml(self) -> Any:
        if self._nvml is None:
            import pynvml  # nvidia-ml-py

            self._nvml = pynvml
        return self._nvml

    def uuid(self) -> str:
        """CUDA's UUID of this device, as NVML spells it (``GPU-…``, or ``MIG-…`` for a MIG slice)."""
        raw = str(self.cuda.get_device_properties(self.index).uuid)
        return raw if raw.startswith(("GPU-", "MIG-")) else f"GPU-{raw}"

    @contextlib.contextmanager
    def nvml_device(self) -> Iterator[NvmlDevice]:
        """NVML initialised and this device's handle, found by UUID; on any NVML error (no driver, not
        supported, no permission, as on vGPUs and in containers) a :class:`NvmlDevice` with the reason."""
        nvml = self.nvml()
        with nvml_api.session(nvml) as (session, failed):
            if session is None:
                yield NvmlDevice(reason=f"nvmlInit failed: {nvml_api.reason(failed)}" if failed else None)
                return
            uuid = self.uuid()
            try:
                handle = session.nvmlDeviceGetHandleByUUID(uuid)
            except nvml_api.error_type(session) as exc:
                yield NvmlDevice(reason=f"no NVML device with UUID {uuid}: {nvml_api.reason(exc)}")
                return
            yield NvmlDevice(session, handle)

    def device_memory_used(self) -> int | None:
        """NVML's view of memory in use on the device: every process and every cached block."""
        with self.nvml_device() as dev:
            if dev.handle is None:
                return None
            try:
                return int(dev.nvml.nvmlDeviceGetMemoryInfo(dev.handle).used)
            except nvml_api.error_type(dev.nvml):
                return None

    @contextlib.contextmanager
    def energy_counter(self) -> Iterator[EnergyCounter | Unavailable]:
        """NVML's total-energy counter of this GPU (Volta and newer), NVML kept open over the block."""
        with self.nvml_device() as dev:
            if dev.handle is None:
                yield Unavailable(f"NVML: {dev.reason}")
            else:
                yield nvml_counter(dev.nvml, dev.handle, label=f"cuda:{self.index}")

    def telemetry(self) -> dict[str, Any]:
        """Clocks, temperature, power and clock-event reasons now. A field NVML cannot give is ``None``
        and its reason is under ``unavailable``; ``throttled`` is whether any throttle reason is active."""
        with self.nvml_device() as dev:
            return _telemetry(dev)

    def info(self) -> dict[str, Any]:
        props = self.cuda.get_device_properties(self.index)
        gpu: dict[str, Any] = {
            "name": props.name,
            "index": self.index,
            "uuid": self.uuid(),
            "capability": f"{props.major}.{props.minor}",
            "memory_total_bytes": int(props.total_memory),
            "cudnn_benchmark": self.cudnn_benchmark,
        }
        with self.nvml_device() as dev:
            if dev.handle is None:
                gpu.update(driver=None, nvml=dev.reason)
            else:
                nvml, handle = dev.nvml, dev.handle
                fields: dict[str, Callable[[], Any]] = {
                    "driver": lambda: nvml_api.text(nvml.nvmlSystemGetDriverVersion()),
                    "nvml_name": lambda: nvml_api.text(nvml.nvmlDeviceGetName(handle)),
                    "pci_bus_id": lambda: nvml_api.text(nvml.nvmlDeviceGetPciInfo(handle).busId),
                    "clock_sm_max_mhz": lambda: int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM)),
                    "clock_mem_max_mhz": lambda: int(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_MEM)),
                    "power_limit_w": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
                }
                unavailable = _read_fields(nvml, fields, gpu)
                gpu["nvml"] = "ok" if not unavailable else unavailable
        return {
            "device": "cuda",
            "device_name": props.name,
            "threads": self.threads,
            "cpu_count": os.cpu_count(),
            "gpu": gpu,
        }

    def is_oom(self, exc: BaseException) -> bool:
        oom_type = getattr(self.cuda, "OutOfMemoryError", None)
        if isinstance(exc, MemoryError) or (oom_type is not None and isinstance(exc, oom_type)):
            return True
        text = str(exc)
        return isinstance(exc, RuntimeError) and any(m.lower() in text.lower() for m in _CUDA_OOM_MARKERS)


def _read_fields(nvml: Any, fields: dict[str, Callable[[], Any]], out: dict[str, Any]) -> dict[str, str]:
    """Read each field on its own: one that NVML refuses is ``None`` with its reason, the rest stand."""
    unavailable: dict[str, str] = {}
    for name, read in fields.items():
        try:
            out[name] = read()
        except nvml_api.error_type(nvml) as exc:
            out[name] = None
            unavailable[name] = nvml_api.reason(exc)
    return unavailable


def _clock_event_reasons(nvml: Any, handle: Any) -> int:
    # nvmlDeviceGetCurrentClocksEventReasons is the current name (driver 535+); the old one remains.
    read = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    return int(read(handle))


def _telemetry(dev: NvmlDevice) -> dict[str, Any]:
    out: dict[str, Any] = {"clock_sm_mhz": None, "clock_mem_mhz": None, "temperature_c": None,
                           "power_w": None, "power_limit_w": None, "clock_event_reasons": None,
                           "throttled": None}
    if dev.handle is None:
        out["unavailable"] = {"nvml": dev.reason}
        return out
    nvml, handle = dev.nvml, dev.handle
    fields: dict[str, Callable[[], Any]] = {
        "clock_sm_mhz": lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
        "clock_mem_mhz": lambda: int(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
        "temperature_c": lambda: int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
        "power_w": lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,  # NVML reports milliwatts
        "power_limit_w": lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0,
        "clock_event_reasons": lambda: _clock_event_reasons(nvml, handle),
    }
    unavailable = _read_fields(nvml, fields, out)
    bits = out["clock_event_reasons"]
    if bits is not None:
        out["clock_event_reasons"] = sorted(name for name, bit in CLOCK_EVENT_REASONS.items() if bits & bit)
        out["throttled"] = any(bits & bit for bit in THROTTLE_REASONS.values())
    if unavailable:
        out["unavailable"] = unavailable
    return out


def throttle_summary(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[bool | None, list[str]]:
    """Whether a case ran throttled, from its telemetry snapshots, and which throttle reasons were seen.
    ``None`` when no snapshot could tell."""
    seen: set[str] = set()
    known = False
    for snap in (before, after):
        if snap and snap.get("throttled") is not None:
            known = True
            seen.update(r for r in snap.get("clock_event_reasons") or [] if r in THROTTLE_REASONS)
    return (bool(seen) if known else None), sorted(seen)


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

    def __init__(self, device_type: str = "cpu", initial: Iterable[torch.UntypedStorage] = ()) -> None:
        super().__init__()
        self.device_type = device_type
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        # storages that existed before the block (seen as op inputs first); views of them are not new
        self.external: dict[int, StorageWeakRef] = {}
        self.current = 0
        # ``initial`` storages count from the start and stop counting when they die (an absolute peak)
        for storage in initial:
            if storage._cdata not in self.live and storage.device.type == device_type:
                self.live[storage._cdata] = (StorageWeakRef(storage), storage.nbytes())
                self.current += storage.nbytes()
        self.peak = self.current

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


def owned_storages(*owners: Any) -> list[torch.UntypedStorage]:
    """The tensor storages that modules (parameters, gradients, buffers), optimizers (state),
    dataclasses of tensors (a batch) and plain tensors or containers of them hold, each once."""
    tensors: list[torch.Tensor] = []
    for owner in owners:
        if isinstance(owner, torch.nn.Module):
            for p in owner.parameters():
                tensors.append(p)
                if p.grad is not None:
                    tensors.append(p.grad)
            tensors.extend(owner.buffers())
        elif isinstance(owner, torch.optim.Optimizer):
            tensors.extend(t for state in owner.state.values() for t in tree_leaves(state)
                           if isinstance(t, torch.Tensor))
        elif dataclasses.is_dataclass(owner) and not isinstance(owner, type):
            tensors.extend(t for f in dataclasses.fields(owner) for t in tree_leaves(getattr(owner, f.name))
                           if isinstance(t, torch.Tensor))
        else:
            tensors.extend(t for t in tree_leaves(owner) if isinstance(t, torch.Tensor))
    seen: dict[int, torch.UntypedStorage] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen.setdefault(storage._cdata, storage)
    return list(seen.values())


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


class DeviceError(ValueError):
    """The device asked for is not one this machine has; the message says what it has."""


def make_device(kind: str | None = None, *, threads: int | None = None, malloc: MallocMode = "steady",
                cuda: Any = None) -> Device:
    """``cuda`` when asked for or available, else ``cpu``. Raises :class:`DeviceError` for a device
    that is not here (CUDA without a usable GPU, an index past the visible ones) or not spelled
    ``cpu``, ``cuda`` or ``cuda:N``. ``malloc`` applies to the CPU device only (CUDA tensors come from
    the caching allocator); ``cuda`` stands in for ``torch.cuda`` in tests."""
    cuda = cuda if cuda is not None else torch.cuda
    if kind is None:
        kind = "cuda" if cuda.is_available() else "cpu"
    if kind == "cpu":
        return CpuDevice(threads, malloc=malloc)
    name, colon, number = kind.partition(":")
    if name != "cuda" or (colon and not number.isdigit()):
        raise DeviceError(f"unknown device {kind!r}; use 'cpu', 'cuda' or 'cuda:N'")
    if not cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise DeviceError(f"{kind!r} asked for, but torch ({torch.__version__}, {build}) sees no usable CUDA device "
                          "here; `bench doctor` says why. Use --bench-device cpu")
    index = int(number) if colon else 0
    count = cuda.device_count()
    if index >= count:
        raise DeviceError(f"{kind!r} asked for, but only {count} CUDA device(s) are visible "
                          f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): use "
                          + ", ".join(f"cuda:{i}" for i in range(count)))
    return CudaDevice(index, threads=threads, cuda=None if cuda is torch.cuda else cuda)
