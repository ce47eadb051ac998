"""The device layer: CUDA and NVML paths against fakes (no GPU here), the CPU path for real."""

from __future__ import annotations

import ctypes
import platform
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from fake_cuda import (
    FakeCuda,
    FakeGpu,
    FakeNvml,
    FakeStream,
    NVMLError_NoPermission,
    NVMLError_NotSupported,
    two_gpus_reordered,
)

from bench.measure.devices import CpuDevice, CudaDevice, DeviceError, make_device


def cuda_device(index: int = 0, cuda: FakeCuda | None = None, nvml: FakeNvml | None = None,
                **kw: Any) -> tuple[CudaDevice, FakeCuda]:
    fake = cuda or FakeCuda()
    cudnn = SimpleNamespace(benchmark=False)
    return CudaDevice(index, cuda=fake, cudnn=cudnn, nvml=nvml or FakeNvml(), **kw), fake


def test_cuda_timing_uses_events_and_synchronises_before_reading() -> None:
    dev, fake = cuda_device()

    def work() -> str:
        fake.launch(0, 12.5)  # a kernel of 12.5 ms of device time
        return "out"

    seconds, out = dev.timed(work)
    assert out == "out"
    assert seconds == pytest.approx(0.0125, abs=1e-4)


def test_cuda_timing_on_the_second_gpu_times_that_gpu() -> None:
    """Events on GPU 0's (idle) stream would measure a launch, and their synchronize would not wait for
    GPU 1: the time must be GPU 1's kernel, and GPU 0 must never get a context."""
    fake = FakeCuda([FakeGpu("GPU zero", "0" * 8), FakeGpu("GPU one", "1" * 8)])
    dev, _ = cuda_device(1, cuda=fake)
    with dev.settings():
        assert fake.current_device() == 1
        seconds, _ = dev.timed(lambda: fake.launch(1, 40.0))
    assert seconds == pytest.approx(0.040, abs=1e-4)
    assert fake.host_ms >= 40.0  # the host waited for GPU 1's work before reading the time
    assert fake.current_device() == 0  # restored
    assert fake.contexts == {1}


def test_cuda_timing_follows_this_devices_current_stream() -> None:
    """Work queued on a side stream of the device is what its current stream is while it runs."""
    fake = FakeCuda([FakeGpu("GPU zero", "0" * 8), FakeGpu("GPU one", "1" * 8)])
    dev, _ = cuda_device(1, cuda=fake)
    side = FakeStream(1, "side")
    with fake.stream(side), fake.device(0):  # current device switched away again inside the stream
        seconds, _ = dev.timed(lambda: fake.launch(1, 7.0))
    assert seconds == pytest.approx(0.007, abs=1e-4)
    assert fake.contexts == {1}


def test_cuda_peak_is_allocator_peak_above_phase_start_on_its_own_device() -> None:
    fake = FakeCuda([FakeGpu("GPU zero", "0" * 8), FakeGpu("GPU one", "1" * 8)])
    dev, _ = cuda_device(1, cuda=fake)
    fake.alloc(1, 5000)  # something allocated (and peaked) before the phase: must not count
    fake.free(1, 5000)
    fake.alloc(0, 10**9)  # another device's allocations are not this device's
    with dev.peak_memory() as peak:
        fake.alloc(1, 300)
        fake.alloc(1, 200)
        fake.free(1, 400)
    assert peak.bytes == 500
    assert fake.log.index("reset_peak:1") > fake.log.index("synchronize:1")  # sync before the reset


def test_cuda_step_memory_is_absolute_and_reports_reserved() -> None:
    fake = FakeCuda([FakeGpu("GPU zero", "0" * 8), FakeGpu("GPU one", "1" * 8)])
    dev, _ = cuda_device(1, cuda=fake)
    fake.alloc(1, 4000)  # weights and optimizer state: live at entry, part of "does the batch fit"
    fake.alloc(1, 6000)
    fake.free(1, 6000)  # a cached block from earlier: reserved, not allocated
    with dev.step_memory() as peak:
        fake.alloc(1, 1000)
        fake.free(1, 1000)
    assert peak.allocated == 5000
    assert peak.reserved == 10000
    dev.release_cached_memory()
    assert fake.gpus[1].reserved == 4000 and fake.gpus[0].reserved == 0  # emptied on its own device


def test_cuda_settings_restore_cudnn_benchmark_threads_and_device() -> None:
    fake = FakeCuda([FakeGpu("GPU zero", "0" * 8), FakeGpu("GPU one", "1" * 8)])
    dev, _ = cuda_device(1, cuda=fake, threads=1)
    before = torch.get_num_threads()
    with dev.settings():
        assert dev.cudnn.benchmark is True
        assert torch.get_num_threads() == 1
        assert fake.current_device() == 1
    assert dev.cudnn.benchmark is False
    assert torch.get_num_threads() == before
    assert fake.current_device() == 0


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
    assert gpu["driver"] == "999.12" and gpu["nvml"] == "ok"
    assert gpu["uuid"] == "GPU-00000000-0000-0000-0000-000000000000"
    assert gpu["memory_total_bytes"] == 80 * 2**30
    assert gpu["clock_sm_max_mhz"] == 1980 and gpu["power_limit_w"] == 400.0
    assert nvml.calls[0] == "nvmlInit" and nvml.calls[-1] == "nvmlShutdown" and nvml.initialised == 0
    assert "nvmlDeviceGetHandleByIndex" not in nvml.calls
    assert dev.device_memory_used() == 1234567


def test_nvml_is_matched_by_uuid_not_index() -> None:
    """CUDA_VISIBLE_DEVICES=2,0 with fastest-first order: cuda:0 is NVML's GPU 2, cuda:1 NVML's GPU 0."""
    cuda, nvml = two_gpus_reordered()
    for index, (name, bus) in enumerate([("NVIDIA H100 80GB HBM3", "00000000:1B:00.0"),
                                         ("NVIDIA A100-SXM4-80GB", "00000000:07:00.0")]):
        dev, _ = cuda_device(index, cuda=cuda, nvml=nvml)
        gpu = dev.info()["gpu"]
        assert gpu["nvml_name"] == gpu["name"] == name
        assert gpu["pci_bus_id"] == bus
    dev, _ = cuda_device(1, cuda=cuda, nvml=nvml)
    assert dev.telemetry()["clock_sm_mhz"] == 1275  # the A100's, not NVML index 1's (an L4 at 2040)


def test_nvml_unavailable_degrades_to_torch_view() -> None:
    dev, _ = cuda_device(nvml=FakeNvml(fail_init=True))
    info = dev.info()
    assert info["gpu"]["driver"] is None
    assert "Driver Not Loaded" in info["gpu"]["nvml"]
    assert info["gpu"]["memory_total_bytes"] == 80 * 2**30
    assert dev.device_memory_used() is None
    snap = dev.telemetry()
    assert snap["clock_sm_mhz"] is None and snap["throttled"] is None
    assert "Driver Not Loaded" in snap["unavailable"]["nvml"]


def test_nvml_errors_after_init_degrade_field_by_field() -> None:
    """vGPUs and containers: init works, then power and clock-event queries are NotSupported, the
    energy counter NoPermission. Each such field is None with its reason; nothing raises."""
    nvml = FakeNvml(fail={"nvmlDeviceGetPowerUsage": NVMLError_NotSupported,
                          "nvmlDeviceGetEnforcedPowerLimit": NVMLError_NotSupported,
                          "nvmlDeviceGetCurrentClocksEventReasons": NVMLError_NoPermission,
                          "nvmlDeviceGetMemoryInfo": NVMLError_NoPermission})
    dev, _ = cuda_device(nvml=nvml)
    snap = dev.telemetry()
    assert snap["clock_sm_mhz"] == 1410 and snap["temperature_c"] == 61
    assert snap["power_w"] is None and snap["throttled"] is None
    assert "Not Supported" in snap["unavailable"]["power_w"]
    assert "Insufficient Permissions" in snap["unavailable"]["clock_event_reasons"]
    info = dev.info()
    assert info["gpu"]["power_limit_w"] is None and info["gpu"]["driver"] == "999.12"
    assert "Not Supported" in info["gpu"]["nvml"]["power_limit_w"]
    assert dev.device_memory_used() is None
    assert nvml.initialised == 0  # every session shut down, errors or not


def test_nvml_device_missing_by_uuid_degrades() -> None:
    dev, _ = cuda_device(nvml=FakeNvml(gpus=[]))
    info = dev.info()
    assert info["gpu"]["driver"] is None and "no NVML device with UUID GPU-0000" in info["gpu"]["nvml"]


def test_telemetry_decodes_clock_event_reasons() -> None:
    nvml = FakeNvml()
    nvml.gpus[0].reasons = 0x01 | 0x04 | 0x20  # idle, software power cap, software thermal slowdown
    dev, _ = cuda_device(nvml=nvml)
    snap = dev.telemetry()
    assert snap["clock_event_reasons"] == ["gpu_idle", "sw_power_cap", "sw_thermal_slowdown"]
    assert snap["throttled"] is True and snap["power_w"] == 312.0
    nvml.gpus[0].reasons = 0x01 | 0x10  # idle and sync boost: states, not throttling
    assert dev.telemetry()["throttled"] is False


def test_throttle_summary() -> None:
    from bench.measure.devices import throttle_summary

    calm = {"throttled": False, "clock_event_reasons": ["gpu_idle"]}
    hot = {"throttled": True, "clock_event_reasons": ["hw_thermal_slowdown", "sync_boost"]}
    assert throttle_summary(calm, calm) == (False, [])
    assert throttle_summary(calm, hot) == (True, ["hw_thermal_slowdown"])
    assert throttle_summary(None, {"throttled": None}) == (None, [])


def test_cuda_oom_detection() -> None:
    dev, fake = cuda_device()
    assert dev.is_oom(fake.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert dev.is_oom(MemoryError("injected out-of-memory in x (--bench-fail)"))
    assert dev.is_oom(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert dev.is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert not dev.is_oom(RuntimeError("shape mismatch"))
    assert not dev.is_oom(RuntimeError("CUDNN_STATUS_NOT_SUPPORTED"))


def test_cpu_step_memory_is_absolute() -> None:
    model = torch.nn.Linear(256, 256)
    weights = (256 * 256 + 256) * 4
    x = torch.randn(4, 256)
    with CpuDevice(threads=1).step_memory(model) as peak:
        model(x).sum().backward()  # output, gradients (as large as the weights) and a few scalars
    assert peak.reserved is None
    assert peak.allocated is not None and 2 * weights <= peak.allocated <= 2 * weights + 3 * 4 * 256 * 4
    # gradients alive at entry and dropped inside the block stop counting when they die
    with CpuDevice(threads=1).step_memory(model) as again:
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
    assert again.allocated is not None and again.allocated <= peak.allocated + 4 * 256 * 4


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
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        make_device("tpu")
    none = SimpleNamespace(is_available=lambda: False, device_count=lambda: 0)
    with pytest.raises(DeviceError, match="'cuda' asked for, but torch .* sees no usable CUDA device"):
        make_device("cuda", cuda=none)
    with pytest.raises(DeviceError, match="unknown device 'cuda:x'"):
        make_device("cuda:x", cuda=FakeCuda())
    assert make_device(None, cuda=none).kind == "cpu"  # no GPU: the CPU by default
    assert make_device(None, cuda=FakeCuda()).kind == "cuda"  # a GPU: CUDA by default


def test_make_device_refuses_an_index_that_is_not_visible() -> None:
    two = FakeCuda([FakeGpu("A", "1"), FakeGpu("B", "2")])
    with pytest.raises(DeviceError, match=r"'cuda:2' asked for, but only 2 CUDA device\(s\) are visible .*use cuda:0, cuda:1"):
        make_device("cuda:2", cuda=two)
    device = make_device("cuda:1", cuda=two)
    assert device.torch_device == torch.device("cuda", 1) and device.kind == "cuda"


def test_cuda_rng_state_is_this_devices_own() -> None:
    """The trainer's seeded scope saves and restores the measured device's generator, not the current
    device's: with cuda:1 measured while cuda:0 is current, cuda:0's state must stay untouched."""
    from bench.measure.train import Determinism

    fake = FakeCuda([FakeGpu("A", "1"), FakeGpu("B", "2")])
    device, _ = cuda_device(1, cuda=fake)
    assert device.bitwise_deterministic is False
    fake.rng = {0: b"zero", 1: b"one"}
    scope = Determinism(5, device)
    with scope:
        fake.rng[1] = b"drawn inside"  # the scope's own stream moved on
    assert fake.rng == {0: b"zero", 1: b"one"}  # the caller's state is back
    with scope:
        assert fake.rng[1] == b"drawn inside"  # and the scope resumes its own
    assert fake.rng[0] == b"zero"


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
    from bench.measure.devices import steady_malloc

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
    from bench.measure.devices import MALLOC_MODES
    from bench.record.options import OPTIONS

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
    from bench.measure.devices import steady_malloc

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


def test_cuda_energy_counter_reads_this_gpus_nvml_counter() -> None:
    from bench.measure.energy import Unavailable

    cuda, nvml = two_gpus_reordered()
    nvml.gpus[0].energy_mj = 5_000  # the A100 (cuda:1), NVML index 0
    nvml.gpus[2].energy_mj = 9_000_000
    dev, _ = cuda_device(1, cuda=cuda, nvml=nvml)
    with dev.energy_counter() as counter:
        assert not isinstance(counter, Unavailable)
        assert counter.read_joules() == pytest.approx(5.0)
        nvml.gpus[0].energy_mj += 250
        assert counter.read_joules() == pytest.approx(5.25)
    assert nvml.initialised == 0
    nvml.fail["nvmlDeviceGetTotalEnergyConsumption"] = NVMLError_NotSupported
    with dev.energy_counter() as counter:
        assert isinstance(counter, Unavailable) and "Not Supported" in counter.reason
    with cuda_device(nvml=FakeNvml(fail_init=True))[0].energy_counter() as counter:
        assert isinstance(counter, Unavailable) and "Driver Not Loaded" in counter.reason


def test_cpu_energy_counter_is_rapl_or_a_reason() -> None:
    from bench.measure.energy import Unavailable

    with CpuDevice(threads=1).energy_counter() as counter:
        if isinstance(counter, Unavailable):
            assert counter.reason  # e.g. no /sys/class/powercap on this VM
        else:
            assert counter.read_joules() >= 0
