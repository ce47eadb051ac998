"""Fakes of ``torch.cuda`` and ``pynvml`` close enough to the real APIs that a wrong device, a wrong stream
or NVML's other numbering fails a test.

What they model, and where in the real code it comes from:

* ``torch.cuda``: a *current device* (``current_device``, the ``device(i)`` context manager, which
  restores the previous one on exit), one current stream per device (``current_stream(device=None)``
  means the current device's, as in ``torch/cuda/__init__.py``), and events that belong to the device of
  the stream they were first recorded on; ``Event.record(stream=None)`` uses the current device's current
  stream (``torch/cuda/streams.py``). An event's time is when the work queued before it on its stream
  ends. ``elapsed_time`` needs both events recorded on one device and completed (CUDA raises
  ``cudaErrorNotReady`` otherwise). Work is "launched" by :meth:`FakeCuda.launch` onto the current stream
  of the device that owns the tensors, as a kernel on a ``cuda:1`` tensor would be. The allocator keeps
  statistics per device; calls without a device read the current one. Every call that would create a
  CUDA context on a device adds it to ``contexts``.
* ``pynvml``: devices in PCI order, unaffected by ``CUDA_VISIBLE_DEVICES``; handles by index (PCI order)
  or by UUID (``GPU-…``, str or bytes); ``NVMLError`` subclasses per code; any call can be made to raise
  after ``nvmlInit`` succeeded, as NotSupported/NoPermission do on vGPUs and in containers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

LAUNCH_MS = 0.005  # host time one kernel launch takes


@dataclass
class FakeGpu:
    name: str
    uuid: str  # without the "GPU-" prefix, as CUDA's device properties print it
    pci_bus_id: str = "00000000:00:00.0"
    total_memory: int = 80 * 2**30
    allocated: int = 0
    peak: int = 0
    reserved: int = 0
    reserved_peak: int = 0


@dataclass
class FakeStream:
    device_index: int
    name: str = "default"
    end_ms: float = 0.0  # when the work queued on it so far finishes


class FakeEvent:
    def __init__(self, cuda: FakeCuda, enable_timing: bool = False) -> None:
        self.cuda, self.enable_timing = cuda, enable_timing
        self.device: int | None = None
        self.t: float | None = None
        self.done = False

    def record(self, stream: FakeStream | None = None) -> None:
        if stream is None:
            stream = self.cuda.current_stream()
        if self.device is not None and self.device != stream.device_index:
            raise RuntimeError("Event device does not match recording stream's device")
        self.device = stream.device_index
        self.cuda.touch(stream.device_index)
        self.cuda.host_ms += LAUNCH_MS
        self.t = max(stream.end_ms, self.cuda.host_ms)
        self.done = False
        self.cuda.events.append(self)

    def synchronize(self) -> None:
        assert self.t is not None, "synchronize on an event that was never recorded"
        self.cuda.host_ms = max(self.cuda.host_ms, self.t)
        self.done = True

    def query(self) -> bool:
        return self.done or (self.t is not None and self.t <= self.cuda.host_ms)

    def elapsed_time(self, end: FakeEvent) -> float:
        if not (self.enable_timing and end.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'.")
        if self.t is None or end.t is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        if self.device != end.device:
            raise RuntimeError("Both events must be recorded on the same device.")
        if not (self.query() and end.query()):
            raise RuntimeError("CUDA error: device not ready")  # cudaErrorNotReady
        return end.t - self.t  # milliseconds


class FakeCuda:
    """Enough of torch.cuda for the device layer, with several GPUs (CUDA order: fastest first)."""

    class OutOfMemoryError(RuntimeError):
        pass

    def __init__(self, gpus: list[FakeGpu] | None = None) -> None:
        self.gpus = gpus or [FakeGpu("Fake GPU 80GB", "00000000-0000-0000-0000-000000000000")]
        self.current = 0
        self.streams = [FakeStream(i) for i in range(len(self.gpus))]
        self.host_ms = 0.0
        self.events: list[FakeEvent] = []
        self.contexts: set[int] = set()
        self.log: list[str] = []
        #: Each device's own generator state (``torch.cuda.get_rng_state(device)``): a byte string here.
        self.rng: dict[int, bytes] = {i: bytes([i]) for i in range(len(self.gpus))}

    # -- devices and streams -----------------------------------------------------------------------
    def touch(self, index: int) -> None:
        self.contexts.add(index)

    def _index(self, device: Any) -> int:
        if device is None:
            return self.current
        index = device if isinstance(device, int) else device.index
        if not 0 <= index < len(self.gpus):
            raise RuntimeError(f"CUDA error: invalid device ordinal {index}")
        return index

    def device_count(self) -> int:
        return len(self.gpus)

    def is_available(self) -> bool:
        return bool(self.gpus)

    # torch.cuda.random: "device (torch.device or int, optional): The device to return the RNG state of.
    # Default: 'cuda' (i.e., torch.device('cuda'), the current CUDA device)"
    def _rng_index(self, device: Any) -> int:
        if device in (None, "cuda"):
            return self.current
        if isinstance(device, str):
            return self._index(int(device.split(":", 1)[1]))
        return self._index(device)

    def get_rng_state(self, device: Any = "cuda") -> bytes:
        index = self._rng_index(device)
        self.touch(index)
        return self.rng[index]

    def set_rng_state(self, new_state: bytes, device: Any = "cuda") -> None:
        index = self._rng_index(device)
        self.touch(index)
        self.rng[index] = new_state

    def current_device(self) -> int:
        return self.current

    def set_device(self, device: Any) -> None:
        self.current = self._index(device)

    @contextlib.contextmanager
    def device(self, device: Any) -> Iterator[None]:
        previous, self.current = self.current, self._index(device)
        try:
            yield
        finally:
            self.current = previous

    def current_stream(self, device: Any = None) -> FakeStream:
        index = self._index(device)
        self.touch(index)
        return self.streams[index]

    @contextlib.contextmanager
    def stream(self, stream: FakeStream) -> Iterator[None]:
        previous = self.streams[stream.device_index]
        self.streams[stream.device_index] = stream
        try:
            with self.device(stream.device_index):
                yield
        finally:
            self.streams[stream.device_index] = previous

    def Event(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False) -> FakeEvent:
        return FakeEvent(self, enable_timing)

    def launch(self, device: int, ms: float) -> None:
        """A kernel on tensors of ``device``: queued on that device's current stream."""
        self.touch(device)
        self.host_ms += LAUNCH_MS
        stream = self.streams[device]
        stream.end_ms = max(stream.end_ms, self.host_ms) + ms

    def synchronize(self, device: Any = None) -> None:
        index = self._index(device)
        self.touch(index)
        self.log.append(f"synchronize:{index}")
        # torch.cuda.synchronize waits for every stream of that device
        self.host_ms = max([self.host_ms] + [s.end_ms for s in self.streams if s.device_index == index])
        for event in self.events:
            if event.device == index:
                event.done = True

    # -- allocator ---------------------------------------------------------------------------------
    def alloc(self, device: int, n: int) -> None:
        gpu = self.gpus[device]
        gpu.allocated += n
        gpu.peak = max(gpu.peak, gpu.allocated)
        gpu.reserved = max(gpu.reserved, gpu.allocated)
        gpu.reserved_peak = max(gpu.reserved_peak, gpu.reserved)

    def free(self, device: int, n: int) -> None:
        self.gpus[device].allocated -= n  # the block stays cached: reserved does not drop

    def reset_peak_memory_stats(self, device: Any = None) -> None:
        index = self._index(device)
        self.log.append(f"reset_peak:{index}")
        gpu = self.gpus[index]
        gpu.peak, gpu.reserved_peak = gpu.allocated, gpu.reserved

    def memory_allocated(self, device: Any = None) -> int:
        return self.gpus[self._index(device)].allocated

    def max_memory_allocated(self, device: Any = None) -> int:
        return self.gpus[self._index(device)].peak

    def max_memory_reserved(self, device: Any = None) -> int:
        return self.gpus[self._index(device)].reserved_peak

    def empty_cache(self) -> None:
        gpu = self.gpus[self.current]  # torch.cuda.empty_cache acts on the current device
        self.log.append(f"empty_cache:{self.current}")
        gpu.reserved = gpu.allocated

    def get_device_properties(self, device: Any) -> SimpleNamespace:
        gpu = self.gpus[self._index(device)]
        return SimpleNamespace(name=gpu.name, major=9, minor=0, total_memory=gpu.total_memory, uuid=gpu.uuid)


# -- NVML -------------------------------------------------------------------------------------------
class NVMLError(Exception):
    """pynvml's base error: one subclass per NVML return code (pynvml._extractNVMLErrorsAsClasses)."""

    message = "Unknown Error"

    def __str__(self) -> str:
        return self.message


class NVMLError_NotSupported(NVMLError):  # pynvml's names
    message = "Not Supported"


class NVMLError_NoPermission(NVMLError):
    message = "Insufficient Permissions"


class NVMLError_NotFound(NVMLError):
    message = "Not Found"


class NVMLError_DriverNotLoaded(NVMLError):
    message = "Driver Not Loaded"


@dataclass
class NvmlGpu:
    name: str
    uuid: str  # with the "GPU-" prefix, as NVML reports it
    pci_bus_id: str
    clock_sm: int = 1410
    clock_mem: int = 1593
    clock_sm_max: int = 1980
    clock_mem_max: int = 1593
    temperature: int = 61
    power_mw: int = 312_000
    power_limit_mw: int = 400_000
    reasons: int = 0
    energy_mj: int = 0
    memory_used: int = 1234567
    memory_total: int = 80 * 2**30


@dataclass
class FakeNvml:
    """pynvml with ``gpus`` in PCI order. ``fail`` maps a function name to the error it raises after
    ``nvmlInit`` succeeded; ``fail_init`` makes ``nvmlInit`` itself fail (no driver)."""

    gpus: list[NvmlGpu] = field(default_factory=lambda: [
        NvmlGpu("Fake GPU 80GB", "GPU-00000000-0000-0000-0000-000000000000", "00000000:00:00.0")])
    fail: dict[str, type[NVMLError]] = field(default_factory=dict)
    fail_init: bool = False
    calls: list[str] = field(default_factory=list)
    initialised: int = 0

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name not in ("nvmlInit", "nvmlShutdown") and not self.initialised:
            raise NVMLError("Uninitialized")
        if name in self.fail:
            raise self.fail[name]()

    def _gpu(self, handle: Any) -> NvmlGpu:
        assert isinstance(handle, NvmlGpu), f"not an NVML handle: {handle!r}"
        return handle

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.fail_init:
            raise NVMLError_DriverNotLoaded()
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")
        self.initialised -= 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> NvmlGpu:
        self._call("nvmlDeviceGetHandleByIndex")
        return self.gpus[index]  # PCI order: CUDA_VISIBLE_DEVICES does not apply to NVML

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> NvmlGpu:
        self._call("nvmlDeviceGetHandleByUUID")
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for gpu in self.gpus:
            if gpu.uuid == text:
                return gpu
        raise NVMLError_NotFound()

    def nvmlSystemGetDriverVersion(self) -> str:
        self._call("nvmlSystemGetDriverVersion")
        return "999.12"

    def nvmlDeviceGetName(self, handle: Any) -> str:
        self._call("nvmlDeviceGetName")
        return self._gpu(handle).name

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        self._call("nvmlDeviceGetUUID")
        return self._gpu(handle).uuid

    def nvmlDeviceGetPciInfo(self, handle: Any) -> SimpleNamespace:
        self._call("nvmlDeviceGetPciInfo")
        return SimpleNamespace(busId=self._gpu(handle).pci_bus_id)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> SimpleNamespace:
        self._call("nvmlDeviceGetMemoryInfo")
        gpu = self._gpu(handle)
        return SimpleNamespace(total=gpu.memory_total, used=gpu.memory_used, free=gpu.memory_total - gpu.memory_used)

    def nvmlDeviceGetClockInfo(self, handle: Any, kind: int) -> int:
        self._call("nvmlDeviceGetClockInfo")
        gpu = self._gpu(handle)
        return {self.NVML_CLOCK_SM: gpu.clock_sm, self.NVML_CLOCK_MEM: gpu.clock_mem}[kind]

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, kind: int) -> int:
        self._call("nvmlDeviceGetMaxClockInfo")
        gpu = self._gpu(handle)
        return {self.NVML_CLOCK_SM: gpu.clock_sm_max, self.NVML_CLOCK_MEM: gpu.clock_mem_max}[kind]

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        self._call("nvmlDeviceGetTemperature")
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._gpu(handle).temperature

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        self._call("nvmlDeviceGetPowerUsage")
        return self._gpu(handle).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        self._call("nvmlDeviceGetEnforcedPowerLimit")
        return self._gpu(handle).power_limit_mw

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        self._call("nvmlDeviceGetCurrentClocksEventReasons")
        return self._gpu(handle).reasons

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        self._call("nvmlDeviceGetTotalEnergyConsumption")
        return self._gpu(handle).energy_mj


def two_gpus_reordered() -> tuple[FakeCuda, FakeNvml]:
    """A machine with three GPUs in PCI order (A100, L4, H100) and ``CUDA_VISIBLE_DEVICES=2,0`` under
    fastest-first ordering: CUDA's device 0 is the H100 (NVML index 2), device 1 the A100 (NVML index 0)."""
    uuids = ["11111111-aaaa-0000-0000-000000000000", "22222222-bbbb-0000-0000-000000000000",
             "33333333-cccc-0000-0000-000000000000"]
    nvml = FakeNvml(gpus=[
        NvmlGpu("NVIDIA A100-SXM4-80GB", f"GPU-{uuids[0]}", "00000000:07:00.0", clock_sm=1275),
        NvmlGpu("NVIDIA L4", f"GPU-{uuids[1]}", "00000000:0A:00.0", clock_sm=2040),
        NvmlGpu("NVIDIA H100 80GB HBM3", f"GPU-{uuids[2]}", "00000000:1B:00.0", clock_sm=1980),
    ])
    cuda = FakeCuda([FakeGpu("NVIDIA H100 80GB HBM3", uuids[2]), FakeGpu("NVIDIA A100-SXM4-80GB", uuids[0])])
    return cuda, nvml
