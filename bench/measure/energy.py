"""Energy per round, from the cumulative energy counters of a GPU (NVML) or of the CPU packages (RAPL).

Conventions, stated once:

* A counter is cumulative and monotonic, in **joules** (:meth:`EnergyCounter.read_joules`); the energy of
  a window is the difference of two reads. Nothing else about the counter's origin is meaningful.
* Counters are opened with :func:`nvml_counter` or :func:`rapl_counter`. Each returns either an
  :class:`EnergyCounter` or :class:`Unavailable` with a human-readable reason; "this machine cannot
  measure energy" never raises and never becomes a number. A counter that opened but fails on a later
  read raises :class:`CounterReadError`, which :func:`measure` turns into :class:`Unavailable`.
* Counters refresh at an interval (NVML: tens of milliseconds up to ~100 ms; RAPL: ~1 ms), far coarser
  than one forward or backward phase, so energy is never attributed to a phase: :func:`measure` runs
  whole rounds until a window of at least ``min_seconds`` and ``min_rounds`` is covered and reports
  joules per round. A window whose counter did not advance is rejected, not reported as 0 J.
* What is counted. NVML: the whole board of one GPU (GPU and its memory). RAPL: the sum of the CPU
  *package* domains (``package-N``), which is neither DRAM nor the rest of the machine. Both include the
  device's idle/static power while the rounds run; nothing is subtracted.

Everything touching hardware is injected (the ``nvml`` module object and a device handle the caller
resolved; the powercap root directory and the file reader), so tests run against fakes. Nothing happens
at import.

Typical use (the caller owns NVML init/shutdown and finds the handle, e.g. by UUID)::

    counter = nvml_counter(pynvml, handle, label=uuid)      # or rapl_counter()
    if isinstance(counter, Unavailable):
        record(energy=None, reason=counter.reason)
    else:
        window = measure(counter, one_round, synchronize=torch.cuda.synchronize)
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bench.measure import nvml as nvml_api

__all__ = [
    "DEFAULT_MIN_ROUNDS",
    "DEFAULT_MIN_SECONDS",
    "DEFAULT_POLL_SECONDS",
    "NVML_UPDATE_INTERVAL_S",
    "POWERCAP_ROOT",
    "RAPL_UPDATE_INTERVAL_S",
    "CounterReadError",
    "EnergyCounter",
    "EnergyWindow",
    "NvmlEnergyCounter",
    "RaplEnergyCounter",
    "RaplZone",
    "Unavailable",
    "measure",
    "nvml_counter",
    "rapl_counter",
]

# NVML's total-energy counter is refreshed by the driver, not on every read. PETSc's manual page for
# PetscLogGpuEnergyMeter (which reads this same counter) says "for newer GPUs, energy readings are updated
# every 20-100ms"; the ML.ENERGY blog ("Thermally Stable Profiling for Accurate GPU Energy Measurement")
# puts it at "approximately every 100 ms". The pynvml PR that added the binding
# (gpuopenanalytics/pynvml#18) observed ~10 ms on one system. We keep the conservative upper end.
NVML_UPDATE_INTERVAL_S = 0.1

# RAPL's energy-status registers are updated by the processor about every millisecond (e.g. QEMU's
# commit adding RAPL MSR emulation: "They are updated by microcode every ~1ms"). The sysfs read itself
# costs microseconds, so the window, not the read, limits precision.
RAPL_UPDATE_INTERVAL_S = 1e-3

# Default window. Each end of a window reads a value up to one refresh interval stale, so the window's
# energy is off by at most (power x refresh interval): relative error <= 0.1 s / T. T = 5 s bounds it at
# 2 % for NVML's ~100 ms refresh; ML.ENERGY's blog (above) finds one-second windows still noisy.
DEFAULT_MIN_SECONDS = 5.0
# At least this many rounds, so that one slow round (a GC pause, a clock change) weighs at most 10 %.
DEFAULT_MIN_ROUNDS = 10
# Read the counter at least this often inside a window, without synchronising, only so that a wrapping
# counter cannot wrap twice unseen: a 32-bit RAPL counter with a 15.3 uJ unit wraps after ~65.5 kJ,
# i.e. after ~4 minutes at 250 W. One read per second costs nothing measurable.
DEFAULT_POLL_SECONDS = 1.0

POWERCAP_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class Unavailable:
    """Energy cannot be measured here; ``reason`` says why, for the report."""

    reason: str


class CounterReadError(Exception):
    """A counter that opened fine failed on a later read (driver reset, GPU lost, file gone)."""


class EnergyCounter(Protocol):
    """A cumulative, monotonic energy counter in joules."""

    @property
    def name(self) -> str:
        """What is counted, e.g. ``"nvml:GPU-1234…"`` or ``"rapl:package-0+package-1"``."""
        ...

    @property
    def resolution_j(self) -> float:
        """The smallest step a reading can show, in joules (the counter's unit)."""
        ...

    @property
    def update_interval_s(self) -> float:
        """Typical time between two hardware refreshes of the value, in seconds."""
        ...

    def read_joules(self) -> float:
        """Cumulative energy in joules; only differences between reads are meaningful.

        Raises :class:`CounterReadError` if the hardware cannot be read any more."""
        ...


# --- NVML ---------------------------------------------------------------------------------------------


class NvmlEnergyCounter:
    """``nvmlDeviceGetTotalEnergyConsumption``: millijoules since the driver was last loaded (Volta and
    newer). 64-bit, so it does not wrap in practice; a driver reload resets it (seen as going backwards).
    """

    resolution_j = 1e-3  # the API's unit is one millijoule
    update_interval_s = NVML_UPDATE_INTERVAL_S

    def __init__(self, nvml: Any, handle: Any, *, label: str = "") -> None:
        self._nvml = nvml
        self._handle = handle
        self.name = f"nvml:{label}" if label else "nvml"

    def read_joules(self) -> float:
        try:
            millijoules = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except nvml_api.error_type(self._nvml) as exc:
            raise CounterReadError(_nvml_reason(self._nvml, exc)) from exc
        return float(millijoules) / 1000.0


def nvml_counter(nvml: Any, handle: Any, *, label: str = "") -> NvmlEnergyCounter | Unavailable:
    """The GPU's total-energy counter, or why it is unavailable.

    ``nvml`` is the pynvml module (or a fake with ``nvmlDeviceGetTotalEnergyConsumption`` and
    ``NVMLError``); ``handle`` is an ``nvmlDevice_t`` the caller resolved (NVML must be initialised by the
    caller, and stay so while the counter is used). ``label`` names the GPU in :attr:`name`, e.g. its UUID.
    The counter is read once here, so "not supported" is known before any round runs.
    """
    if not hasattr(nvml, "nvmlDeviceGetTotalEnergyConsumption"):
        return Unavailable("the NVML bindings have no nvmlDeviceGetTotalEnergyConsumption (pynvml too old)")
    counter = NvmlEnergyCounter(nvml, handle, label=label)
    try:
        counter.read_joules()
    except CounterReadError as exc:
        return Unavailable(str(exc))
    return counter


def _nvml_reason(nvml: Any, exc: BaseException) -> str:
    """A reason for the report. pynvml maps each NVML_ERROR_* code to a class NVMLError_<CamelCase>
    (pynvml._extractNVMLErrorsAsClasses), so the common cases are told apart by class."""

    def is_a(class_name: str) -> bool:
        cls = getattr(nvml, class_name, None)
        return isinstance(cls, type) and isinstance(exc, cls)

    if is_a("NVMLError_NotSupported"):
        return (f"NVML energy counter not supported on this GPU ({exc}): it needs Volta or newer, and is "
                "often not exposed to vGPUs or MIG instances")
    if is_a("NVMLError_NoPermission"):
        return f"NVML energy counter not readable by this user ({exc})"
    if is_a("NVMLError_FunctionNotFound"):
        return f"the NVIDIA driver has no nvmlDeviceGetTotalEnergyConsumption ({exc}): driver too old"
    if is_a("NVMLError_Uninitialized"):
        return f"NVML is not initialised ({exc}): call nvmlInit before opening the counter"
    return f"NVML error reading the energy counter: {exc}"


# --- RAPL (Linux powercap) ----------------------------------------------------------------------------

# Top-level RAPL zones are intel-rapl:N; intel-rapl:N:M are their subzones (core, uncore, dram), which
# would be double counted (core, uncore) or are not part of the package (dram). intel-rapl-mmio:N is a
# second interface to the same package registers on recent Intel client CPUs, so it is not read either.
# AMD Zen (family 17h and later) registers with the same "intel-rapl" control type and zone names
# (linux-pm patch "powercap: Add AMD Fam17h RAPL support", 2020), so no AMD-specific path is needed.
_TOP_LEVEL_ZONE = re.compile(r"intel-rapl:(\d+)")
# Package zones are named package-N. Others at the top level ("psys", Skylake+ client platforms)
# already contain the package energy and must not be added to it.
_PACKAGE_NAME = re.compile(r"package-\d+")


def _read_text(path: Path) -> str:
    return path.read_text(encoding="ascii")


@dataclass(frozen=True)
class RaplZone:
    """One package zone: its sysfs directory, ``name`` and ``max_energy_range_uj``."""

    path: Path
    name: str
    max_energy_range_uj: int


class RaplEnergyCounter:
    """The sum of the RAPL package zones' ``energy_uj`` (microjoules), unwrapped.

    Each zone's counter wraps to 0 after ``max_energy_range_uj``; a read smaller than the previous one is
    taken as one wrap. So the counter must be read at least once per wrap period (minutes at full load:
    :func:`measure` polls it). The register wraps one energy unit (~15-61 uJ) after the advertised range;
    treating the range as the modulus errs by that much per wrap, negligible at joule scale.
    """

    resolution_j = 1e-6  # sysfs unit; the hardware's own energy unit is coarser (2^-16 J on many CPUs)
    update_interval_s = RAPL_UPDATE_INTERVAL_S

    def __init__(self, zones: Sequence[RaplZone], read_text: Callable[[Path], str] = _read_text) -> None:
        if not zones:
            raise ValueError("a RAPL counter needs at least one package zone")
        self.zones = tuple(zones)
        self._read_text = read_text
        self.name = "rapl:" + "+".join(zone.name for zone in self.zones)
        self._last = [self._raw(zone) for zone in self.zones]
        self._total_uj = 0

    def _raw(self, zone: RaplZone) -> int:
        path = zone.path / "energy_uj"
        try:
            return int(self._read_text(path).strip())
        except (OSError, ValueError) as exc:
            raise CounterReadError(f"cannot read {path}: {exc}") from exc

    def read_joules(self) -> float:
        for i, zone in enumerate(self.zones):
            raw = self._raw(zone)
            delta = raw - self._last[i]
            if delta < 0:  # wrapped past max_energy_range_uj
                delta += zone.max_energy_range_uj
            self._total_uj += delta
            self._last[i] = raw
        return self._total_uj / 1e6


def rapl_counter(
    root: Path = POWERCAP_ROOT, *, read_text: Callable[[Path], str] = _read_text
) -> RaplEnergyCounter | Unavailable:
    """The CPU packages' RAPL energy (summed over sockets), or why it is unavailable.

    ``root`` is the powercap class directory (tests pass a fake tree); ``read_text`` reads one sysfs file
    (tests inject a reader that raises ``PermissionError``: as root, file modes do not stop reads).
    """
    if not root.is_dir():
        return Unavailable(f"{root} does not exist: no Linux powercap interface (not Linux, a VM without "
                           "RAPL passthrough, or intel_rapl not loaded)")
    numbered = []
    for entry in root.iterdir():
        match = _TOP_LEVEL_ZONE.fullmatch(entry.name)
        if match:
            numbered.append((int(match.group(1)), entry))
    if not numbered:
        return Unavailable(f"no RAPL zone (intel-rapl:N) under {root}")
    zones: list[RaplZone] = []
    others: list[str] = []
    for _, path in sorted(numbered):
        file = path / "name"
        try:
            name = read_text(file).strip()
            if not _PACKAGE_NAME.fullmatch(name):
                others.append(f"{path.name}={name}")
                continue
            file = path / "max_energy_range_uj"
            max_range = int(read_text(file).strip())
            file = path / "energy_uj"  # probe: the file that is root-only on many kernels
            int(read_text(file).strip())
        except PermissionError:
            return Unavailable(
                f"{file} is not readable by this user: energy_uj has been root-only on most "
                "distributions since the 2020 RAPL side-channel fix (CVE-2020-8694); run as root or grant "
                "read access to the powercap files"
            )
        except (OSError, ValueError) as exc:
            return Unavailable(f"cannot read {file}: {exc}")
        if max_range <= 0:
            return Unavailable(f"{path}/max_energy_range_uj is {max_range}: cannot unwrap the counter")
        zones.append(RaplZone(path, name, max_range))
    if not zones:
        return Unavailable(f"no RAPL package zone under {root} (found {', '.join(others)})")
    try:
        return RaplEnergyCounter(zones, read_text)
    except CounterReadError as exc:
        return Unavailable(str(exc))


# --- measurement --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyWindow:
    """Energy over a window of whole rounds. ``joules_per_round = joules / rounds``; ``mean_power_w =
    joules / seconds``; ``seconds`` runs from the first read to the last, both taken after
    synchronising the device."""

    joules_per_round: float
    mean_power_w: float
    rounds: int
    seconds: float
    joules: float
    counter: str


def measure(
    counter: EnergyCounter,
    run_round: Callable[[], object],
    *,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    min_rounds: int = DEFAULT_MIN_ROUNDS,
    clock: Callable[[], float] = time.perf_counter,
    synchronize: Callable[[], object] = lambda: None,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
) -> EnergyWindow | Unavailable:
    """Run ``run_round`` until at least ``min_seconds`` and ``min_rounds`` are covered; energy per round.

    The device is synchronised before the first read (so work queued earlier is not charged to the
    window) and after the last round (so the window holds all of its work). In between, the counter is
    read every ``poll_seconds`` without synchronising, only to keep wrapping counters unwrapped. The
    caller warms up before calling. A counter that did not advance, went backwards, or failed to read
    gives :class:`Unavailable`.
    """
    if min_seconds <= 0 or min_rounds < 1 or poll_seconds <= 0:
        raise ValueError(f"need min_seconds > 0, min_rounds >= 1 and poll_seconds > 0, got "
                         f"{min_seconds}, {min_rounds}, {poll_seconds}")
    try:
        synchronize()
        start_j = counter.read_joules()
        start = last_poll = clock()
        rounds = 0
        while True:
            run_round()
            rounds += 1
            now = clock()
            if rounds >= min_rounds and now - start >= min_seconds:
                break
            if now - last_poll >= poll_seconds:
                counter.read_joules()
                last_poll = now
        synchronize()
        end = clock()
        end_j = counter.read_joules()
    except CounterReadError as exc:
        return Unavailable(f"{counter.name}: {exc}")
    seconds = end - start
    joules = end_j - start_j
    if seconds <= 0:
        return Unavailable(f"the clock did not advance over {rounds} rounds ({seconds!r} s)")
    if not math.isfinite(joules):
        return Unavailable(f"{counter.name} gave a non-finite energy difference ({joules!r} J)")
    if joules < 0:
        return Unavailable(f"{counter.name} went backwards by {-joules:.3f} J in {seconds:.3g} s "
                           "(driver reloaded or counter reset?)")
    if joules == 0:
        return Unavailable(f"{counter.name} did not advance in {seconds:.3g} s over {rounds} rounds")
    return EnergyWindow(
        joules_per_round=joules / rounds,
        mean_power_w=joules / seconds,
        rounds=rounds,
        seconds=seconds,
        joules=joules,
        counter=counter.name,
    )
