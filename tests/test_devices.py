"""The device layer: CUDA and NVML paths against fakes (no GPU here), the CPU path for real."""

from __future__ import annotations

import ctypes
import platform
from types import SimpleNamespace

import pytest
import torch

from bench.devices import CpuDevice, CudaDevice, make_device


class FakeEvent:
    def __init__(self, log: list[str], clock: FakeCuda, enable_timing: bool = False) -> None:
        assert enable_timing, "timing events must be created with enable_timing=True"
        self.log, self.clock, self.t = log, clock, None

    def record(self) -> None:
        self.t = self.clock.now
        self.log.append("record")

    def synchronize(self) -> None:
        self.log.append("event.synchronize")

    def elapsed_time(self, end: FakeEvent) -> float:
        assert "event.synchronize" in self.log, "elapsed_time read before the end event was synchronised"
        return end.t - self.t  # milliseconds, like CUDA


class FakeCuda:
    """Enough of torch.cuda for the harness: events on a fake clock and an allocator with peaks."""

    class OutOfMemoryError(RuntimeError):
        pass

    def __init__(self) -> None:
        self.now = 0.0  # ms
        self.log: list[str] = []
        self.allocated = 1000
        self.peak = 1000

    def Event(self, enable_timing: bool = False) -> FakeEvent:
        return FakeEvent(self.log, self, enable_timing)

    def synchronize(self, index: int = 0) -> None:
        self.log.append("synchronize")

    def reset_peak_memory_stats(self, index: int = 0) -> None:
        self.log.append("reset_peak")
        self.peak = self.allocated

    def memory_allocated(self, index: int = 0) -> int:
        return self.allocated

    def max_memory_allocated(self, index: int = 0) -> int:
        return self.peak

    def alloc(self, n: int) -> None:
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def free(self, n: int) -> None:
        self.allocated -= n

    def get_device_properties(self, index: int) -> SimpleNamespace:
        return SimpleNamespace(name="Fake GPU 80GB", major=9, minor=0, total_memory=80 * 2**30)


class FakeNvml:
    NVML_CLOCK_SM, NVML_CLOCK_MEM = 1, 2

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init, self.calls = fail_init, []

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        return f"h{i}"

    def nvmlSystemGetDriverVersion(self) -> bytes:
        return b"999.12"

    def nvmlDeviceGetName(self, h: str) -> str:
        return "Fake GPU 80GB"

    def nvmlDeviceGetMemoryInfo(self, h: str) -> SimpleNamespace:
        return SimpleNamespace(total=85899345920, used=1234567, free=0)

    def nvmlDeviceGetClockInfo(self, h: str, kind: int) -> int:
        return {1: 1410, 2: 1593}[kind]

    def nvmlDeviceGetMaxClockInfo(self, h: str, kind: int) -> int:
        return 1980


def cuda_device(**kw) -> tuple[CudaDevice, FakeCuda]:
    fake = FakeCuda()
    cudnn = SimpleNamespace(benchmark=False)
    return CudaDevice(0, cuda=fake, cudnn=cudnn, nvml=kw.pop("nvml", FakeNvml()), **kw), fake


def test_cuda_timing_uses_events_and_synchronises_before_reading() -> None:
    dev, fake = cuda_device()

    def work() -> str:
        fake.now += 12.5  # the "kernel" takes 12.5 ms of device time
        return "out"

    seconds, out = dev.timed(work)
    assert out == "out"
    assert seconds == pytest.approx(0.0125)
    assert fake.log == ["record", "record", "event.synchronize"]


def test_cuda_peak_is_allocator_peak_above_phase_start() -> None:
    dev, fake = cuda_device()
    fake.alloc(5000)  # something allocated (and peaked) before the phase: must not count
    fake.free(5000)
    with dev.peak_memory() as peak:
        fake.alloc(300)
        fake.alloc(200)
        fake.free(400)
    assert peak.bytes == 500
    assert fake.log.index("reset_peak") > fake.log.index("synchronize")  # sync before the reset


def test_cuda_settings_restore_cudnn_benchmark_and_threads() -> None:
    dev, _ = cuda_device(threads=1)
    before = torch.get_num_threads()
    with dev.settings():
        assert dev.cudnn.benchmark is True
        assert torch.get_num_threads() == 1
    assert dev.cudnn.benchmark is False
    assert torch.get_num_threads() == before


def test_cuda_settings_restore_on_error() -> None:
    dev, _ = cuda_device()
    with pytest.raises(ValueError), dev.settings():
        raise ValueError("boom")
    assert dev.cudnn.benchmark is False


def test_nvml_provenance() -> None:
    nvml = FakeNvml()
    dev, _ = cuda_device(nvml=nvml)
    info = dev.info()
    assert info["device"] == "cuda" and info["device_name"] == "Fake GPU 80GB"
    gpu = info["gpu"]
    assert gpu["driver"] == "999.12"
    assert gpu["memory_total_bytes"] == 85899345920
    assert gpu["clock_sm_mhz"] == 1410 and gpu["clock_mem_mhz"] == 1593 and gpu["clock_sm_max_mhz"] == 1980
    assert nvml.calls == ["init", "shutdown"]
    assert dev.device_memory_used() == 1234567


def test_nvml_unavailable_degrades_to_torch_view() -> None:
    dev, _ = cuda_device(nvml=FakeNvml(fail_init=True))
    info = dev.info()
    assert info["gpu"]["driver"] is None
    assert info["gpu"]["memory_total_bytes"] == 80 * 2**30
    assert dev.device_memory_used() is None


def test_cuda_oom_detection() -> None:
    dev, fake = cuda_device()
    assert dev.is_oom(fake.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not dev.is_oom(RuntimeError("shape mismatch"))


def test_cpu_peak_memory_is_real_tensor_memory() -> None:
    dev = CpuDevice(threads=1)
    with dev.peak_memory() as peak:
        a = torch.empty(1 << 20, dtype=torch.uint8)  # 1 MiB
        b = torch.empty(2 << 20, dtype=torch.uint8)  # 2 MiB, alive together with a: peak 3 MiB
        del a, b
        c = torch.empty(1 << 20, dtype=torch.uint8)
        del c
    assert peak.bytes == 3 << 20


def test_cpu_peak_excludes_what_was_live_before() -> None:
    model = torch.nn.Linear(256, 256)
    dev = CpuDevice(threads=1)
    x = torch.randn(4, 256)
    with dev.peak_memory(model) as peak:
        model(x)
    assert peak.bytes == 4 * 256 * 4  # only the output; the 256 KiB of weights were live already


def test_cpu_timing_and_threads() -> None:
    dev = CpuDevice(threads=1)
    seconds, out = dev.timed(lambda: sum(range(1000)))
    assert out == 499500 and 0 < seconds < 1
    before = torch.get_num_threads()
    with dev.settings():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert dev.info()["threads"] == 1


def test_cpu_oom_detection() -> None:
    dev = CpuDevice()
    assert dev.is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:119] DefaultCPUAllocator: can't allocate memory"))
    assert dev.is_oom(MemoryError())
    assert not dev.is_oom(RuntimeError("size mismatch"))


def test_make_device() -> None:
    assert make_device("cpu").kind == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        make_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            make_device("cuda")


def test_cpu_peak_with_frozen_module_called_three_times() -> None:
    """The triplet regime calls a (possibly frozen) model three times per step; both broke MemTracker."""
    net = torch.nn.Linear(64, 64).requires_grad_(False)
    x = torch.randn(8, 64, requires_grad=True)
    out_bytes = 8 * 64 * 4
    with CpuDevice(threads=1).peak_memory(net) as peak:
        y = net(x) + net(x)  # two outputs and their sum alive at once; then the two die
        z = y + net(x)
    assert peak.bytes == 3 * out_bytes
    del z


# -- steady malloc -------------------------------------------------------------------------------------
class _FakeMallopt:
    def __init__(self, ok: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.ok = ok

    def __call__(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.ok


def test_steady_malloc_sets_and_restores_glibc_parameters() -> None:
    from bench.devices import steady_malloc

    fake = _FakeMallopt()
    with steady_malloc(fake) as applied:
        assert applied
        assert fake.calls[0] == (-4, 0)  # M_MMAP_MAX: no mmap'd blocks
        assert fake.calls[1][0] == -1 and fake.calls[1][1] >= 1 << 40  # M_TRIM_THRESHOLD out of reach
    assert fake.calls[2:] == [(-1, 128 * 1024), (-4, 65536)]  # glibc's documented defaults


def test_cpu_device_records_what_the_allocator_did() -> None:
    steady = CpuDevice(threads=1, mallopt=_FakeMallopt())
    with steady.settings():
        pass
    assert steady.info()["malloc"] == "steady"
    refused = CpuDevice(threads=1, mallopt=_FakeMallopt(ok=0))
    with refused.settings():
        pass
    assert refused.info()["malloc"] == "system (mallopt refused)"
    untouched = _FakeMallopt()
    system = CpuDevice(threads=1, malloc="system", mallopt=untouched)
    with system.settings():
        pass
    assert untouched.calls == [] and system.info()["malloc"] == "system"
    with pytest.raises(ValueError, match="malloc mode 'jemalloc'"):
        CpuDevice(malloc="jemalloc")  # type: ignore[arg-type]


def test_malloc_option_choices_match_the_device() -> None:
    from bench.devices import MALLOC_MODES
    from bench.options import OPTIONS

    assert tuple(OPTIONS["bench_malloc"].choices) == MALLOC_MODES


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mmapped_bytes() -> int:
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().hblkhd)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="steady malloc is a glibc setting")
def test_steady_malloc_keeps_large_tensors_off_mmap_for_real() -> None:
    """A 64 MiB tensor (above glibc's largest mmap threshold) is mmap'd by default and comes from
    the heap inside the block: the page faults per step that made CPU timings bimodal are gone."""
    from bench.devices import steady_malloc

    size = 64 << 20
    before = _mmapped_bytes()
    t = torch.empty(size, dtype=torch.uint8)
    assert _mmapped_bytes() - before >= size  # the default: its own mapping
    del t
    with steady_malloc() as applied:
        assert applied
        before = _mmapped_bytes()
        t = torch.empty(size, dtype=torch.uint8)
        assert _mmapped_bytes() - before < size
        del t
