"""Energy counters and windows against fakes: an NVML module whose counter advances with a fake clock
(and raises pynvml's own error classes), and a powercap tree built in tmp_path."""

from __future__ import annotations

import math
from pathlib import Path

import pynvml  # nvidia-ml-py; importing it loads no library, only the error classes are used here
import pytest

from bench.measure.energy import (
    NVML_UPDATE_INTERVAL_S,
    CounterReadError,
    EnergyWindow,
    RaplEnergyCounter,
    Unavailable,
    measure,
    nvml_counter,
    rapl_counter,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeNvml:
    """The slice of pynvml the energy counter uses. The counter (mJ) follows ``watts`` of a fake clock
    and, like the driver's, only changes every ``update_interval`` seconds."""

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_NoPermission = pynvml.NVMLError_NoPermission

    def __init__(self, clock: FakeClock, watts: float = 200.0, update_interval: float = NVML_UPDATE_INTERVAL_S,
                 error: BaseException | None = None) -> None:
        self.clock, self.watts, self.update_interval, self.error = clock, watts, update_interval, error
        self.start_mj = 987_654_321  # energy since the driver loaded, long before the window
        self.reads = 0

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: object) -> int:
        assert handle == "handle-0"
        self.reads += 1
        if self.error is not None:
            raise self.error
        refreshed_at = math.floor(self.clock.now / self.update_interval) * self.update_interval
        return int(self.start_mj + self.watts * refreshed_at * 1000)


def advancing(clock: FakeClock, seconds: float):
    def run_round() -> None:
        clock.now += seconds

    return run_round


# --- NVML ---------------------------------------------------------------------------------------------


def test_nvml_window_gives_joules_per_round_within_the_refresh_bound() -> None:
    clock = FakeClock()
    counter = nvml_counter(FakeNvml(clock, watts=200.0), "handle-0", label="GPU-abc")
    assert not isinstance(counter, Unavailable)
    assert counter.name == "nvml:GPU-abc" and counter.resolution_j == 1e-3
    window = measure(counter, advancing(clock, 0.05), clock=clock)
    assert isinstance(window, EnergyWindow)
    assert window.seconds >= 5.0 and window.rounds >= 10
    # 200 W for 50 ms = 10 J a round; the 100 ms refresh bounds the error at 0.1 s / 5 s = 2 %
    assert window.joules_per_round == pytest.approx(10.0, rel=0.021)
    assert window.mean_power_w == pytest.approx(200.0, rel=0.021)
    assert window.joules == pytest.approx(window.joules_per_round * window.rounds)
    assert window.counter == "nvml:GPU-abc"


def test_min_rounds_governs_slow_rounds_and_min_seconds_fast_ones() -> None:
    clock = FakeClock()
    counter = nvml_counter(FakeNvml(clock), "handle-0")
    assert not isinstance(counter, Unavailable)
    slow = measure(counter, advancing(clock, 2.0), clock=clock, min_seconds=5.0, min_rounds=10)
    assert isinstance(slow, EnergyWindow) and slow.rounds == 10 and slow.seconds == pytest.approx(20.0)
    fast = measure(counter, advancing(clock, 0.01), clock=clock, min_seconds=5.0, min_rounds=10)
    assert isinstance(fast, EnergyWindow) and fast.rounds == pytest.approx(500, abs=1)


def test_device_is_synchronised_before_the_first_read_and_after_the_last_round() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock)
    counter = nvml_counter(nvml, "handle-0")
    assert not isinstance(counter, Unavailable)
    events: list[str] = []
    real_read = counter.read_joules

    def read() -> float:
        events.append("read")
        return real_read()

    counter.read_joules = read  # type: ignore[method-assign]

    def run_round() -> None:
        events.append("round")
        clock.now += 1.0

    measure(counter, run_round, clock=clock, min_seconds=3.0, min_rounds=3,
            synchronize=lambda: events.append("sync"), poll_seconds=100.0)
    assert events == ["sync", "read", "round", "round", "round", "sync", "read"]


def test_counter_that_does_not_advance_is_rejected_not_zero() -> None:
    clock = FakeClock()
    counter = nvml_counter(FakeNvml(clock, watts=0.0), "handle-0")
    assert not isinstance(counter, Unavailable)
    window = measure(counter, advancing(clock, 0.5), clock=clock)
    assert isinstance(window, Unavailable)
    assert "did not advance in 5" in window.reason and "10 rounds" in window.reason


def test_counter_going_backwards_is_rejected() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock)
    counter = nvml_counter(nvml, "handle-0")
    assert not isinstance(counter, Unavailable)

    def driver_reload() -> None:
        clock.now += 1.0
        nvml.start_mj = 0

    window = measure(counter, driver_reload, clock=clock, min_seconds=1.0, min_rounds=1)
    assert isinstance(window, Unavailable) and "went backwards" in window.reason


@pytest.mark.parametrize(
    "code,expected",
    [
        (pynvml.NVML_ERROR_NOT_SUPPORTED, "not supported on this GPU (Not Supported)"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "not readable by this user (Insufficient Permissions)"),
        (pynvml.NVML_ERROR_GPU_IS_LOST, "NVML error reading the energy counter: GPU is lost"),
    ],
    ids=["not-supported", "no-permission", "other"],
)
def test_nvml_errors_make_the_counter_unavailable_with_the_reason(code: int, expected: str) -> None:
    # pynvml.NVMLError(code) builds the code's own subclass, as the real bindings raise it
    error = pynvml.NVMLError(code)
    counter = nvml_counter(FakeNvml(FakeClock(), error=error), "handle-0")
    assert isinstance(counter, Unavailable)
    assert expected in counter.reason


def test_nvml_error_during_the_window_is_unavailable() -> None:
    clock = FakeClock()
    nvml = FakeNvml(clock)
    counter = nvml_counter(nvml, "handle-0")
    assert not isinstance(counter, Unavailable)

    def lose_gpu() -> None:
        clock.now += 1.0
        nvml.error = pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    window = measure(counter, lose_gpu, clock=clock, min_seconds=1.0, min_rounds=1)
    assert isinstance(window, Unavailable) and "GPU is lost" in window.reason
    with pytest.raises(CounterReadError):
        counter.read_joules()


def test_bindings_without_the_energy_function_are_unavailable() -> None:
    class OldNvml:
        NVMLError = pynvml.NVMLError

    counter = nvml_counter(OldNvml(), "handle-0")
    assert isinstance(counter, Unavailable) and "too old" in counter.reason


def test_measure_refuses_a_window_it_cannot_define() -> None:
    clock = FakeClock()
    counter = nvml_counter(FakeNvml(clock), "handle-0")
    assert not isinstance(counter, Unavailable)
    with pytest.raises(ValueError):
        measure(counter, advancing(clock, 1.0), clock=clock, min_seconds=0)
    with pytest.raises(ValueError):
        measure(counter, advancing(clock, 1.0), clock=clock, min_rounds=0)


# --- RAPL ---------------------------------------------------------------------------------------------


def zone(root: Path, dirname: str, name: str, energy_uj: int, max_range_uj: int = 262_143_328_850) -> Path:
    path = root / dirname
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return path


def set_energy(path: Path, energy_uj: int) -> None:
    (path / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def two_sockets(tmp_path: Path) -> dict[str, Path]:
    """A two-socket Intel server as /sys/class/powercap shows it: the control type, two packages with
    core and dram subzones, a psys zone and the MMIO duplicate of package 0."""
    (tmp_path / "intel-rapl").mkdir()  # the control type itself: no zone
    zones = {
        "pkg0": zone(tmp_path, "intel-rapl:0", "package-0", 5_000_000, max_range_uj=10_000_000),
        "core0": zone(tmp_path, "intel-rapl:0:0", "core", 1_000_000),
        "dram0": zone(tmp_path, "intel-rapl:0:1", "dram", 2_000_000),
        "pkg1": zone(tmp_path, "intel-rapl:1", "package-1", 7_000_000),
        "core1": zone(tmp_path, "intel-rapl:1:0", "core", 3_000_000),
        "psys": zone(tmp_path, "intel-rapl:2", "psys", 9_000_000),
        "mmio": zone(tmp_path, "intel-rapl-mmio:0", "package-0", 5_000_000),
    }
    zones["root"] = tmp_path
    return zones


def test_rapl_sums_packages_only(two_sockets: dict[str, Path]) -> None:
    counter = rapl_counter(two_sockets["root"])
    assert isinstance(counter, RaplEnergyCounter)
    assert counter.name == "rapl:package-0+package-1"
    assert [z.path.name for z in counter.zones] == ["intel-rapl:0", "intel-rapl:1"]
    assert counter.read_joules() == 0.0
    set_energy(two_sockets["pkg0"], 6_500_000)  # +1.5 J
    set_energy(two_sockets["pkg1"], 7_250_000)  # +0.25 J
    # subzones are parts of a package (or not in it: dram), psys contains it, mmio duplicates it
    for other in ("core0", "dram0", "core1", "psys", "mmio"):
        set_energy(two_sockets[other], 99_000_000)
    assert counter.read_joules() == pytest.approx(1.75)


def test_rapl_unwraps_at_max_energy_range(two_sockets: dict[str, Path]) -> None:
    counter = rapl_counter(two_sockets["root"])
    assert isinstance(counter, RaplEnergyCounter)
    set_energy(two_sockets["pkg0"], 9_900_000)  # +4.9 J
    assert counter.read_joules() == pytest.approx(4.9)
    set_energy(two_sockets["pkg0"], 400_000)  # wrapped at 10 J: +0.1 + 0.4
    assert counter.read_joules() == pytest.approx(5.4)


def test_rapl_window_polls_so_that_a_wrap_inside_it_is_seen(two_sockets: dict[str, Path]) -> None:
    counter = rapl_counter(two_sockets["root"])
    assert isinstance(counter, RaplEnergyCounter)
    clock = FakeClock()
    energy = {"pkg0": 5_000_000}

    def run_round() -> None:  # 3 J a round on package 0 (range 10 J): wraps every few rounds
        clock.now += 1.0
        energy["pkg0"] = (energy["pkg0"] + 3_000_000) % 10_000_000
        set_energy(two_sockets["pkg0"], energy["pkg0"])

    window = measure(counter, run_round, clock=clock, min_seconds=8.0, min_rounds=8, poll_seconds=1.0)
    assert isinstance(window, EnergyWindow)
    assert window.rounds == 8 and window.joules_per_round == pytest.approx(3.0)
    assert window.mean_power_w == pytest.approx(3.0)


def test_rapl_unreadable_energy_is_unavailable(two_sockets: dict[str, Path]) -> None:
    # As root, chmod 000 does not stop reads, so the denial is injected through the reader.
    def read_text(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    counter = rapl_counter(two_sockets["root"], read_text=read_text)
    assert isinstance(counter, Unavailable)
    assert "intel-rapl:0/energy_uj is not readable" in counter.reason
    assert "CVE-2020-8694" in counter.reason


def test_rapl_without_powercap_is_unavailable(tmp_path: Path) -> None:
    counter = rapl_counter(tmp_path / "missing")
    assert isinstance(counter, Unavailable) and "does not exist" in counter.reason


def test_rapl_without_package_zone_is_unavailable(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "psys", 1)
    counter = rapl_counter(tmp_path)
    assert isinstance(counter, Unavailable)
    assert "no RAPL package zone" in counter.reason and "intel-rapl:0=psys" in counter.reason


def test_rapl_amd_layout_reads_like_intel(tmp_path: Path) -> None:
    # AMD Zen registers with the same control type: intel-rapl:0 = package-0 with a core subzone
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 100)
    zone(tmp_path, "intel-rapl:0:0", "core", 100)
    counter = rapl_counter(tmp_path)
    assert isinstance(counter, RaplEnergyCounter) and counter.name == "rapl:package-0"
    set_energy(pkg, 2_000_100)
    assert counter.read_joules() == pytest.approx(2.0)


def test_rapl_zone_vanishing_mid_window_is_unavailable(two_sockets: dict[str, Path]) -> None:
    counter = rapl_counter(two_sockets["root"])
    assert isinstance(counter, RaplEnergyCounter)
    clock = FakeClock()

    def unplug() -> None:
        clock.now += 1.0
        (two_sockets["pkg1"] / "energy_uj").unlink()

    window = measure(counter, unplug, clock=clock, min_seconds=1.0, min_rounds=1)
    assert isinstance(window, Unavailable) and "intel-rapl:1/energy_uj" in window.reason
