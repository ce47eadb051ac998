"""What this machine can measure, probed before anything is measured (``bench doctor``).

Reports the interpreter, torch and the CUDA it was built for, whether torch can use CUDA, every visible
device (name, capability, memory, UUID), the NVIDIA driver (NVML) and whether it is new enough for torch's
CUDA, and whether ``torch.compile`` can build CPU kernels (a C++ compiler and Python's headers).
:func:`cuda_problem` and :func:`compiler_problem` say in one sentence what is wrong and what to do.

Every lookup (torch, NVML, PATH, running the compiler, the environment) comes through :class:`Probes`,
so that tests check GPU machines, old drivers and missing compilers on a machine that has none of them.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import nvml as nvml_api

#: The oldest Linux x86_64 driver that runs binaries built with each CUDA major (through CUDA minor
#: version compatibility; any newer driver also works, through backward compatibility). Source: NVIDIA,
#: "CUDA Compatibility", Minor Version Compatibility, Table 1 (13.x >= 580, 12.x >= 525, 11.x >= 450:
#: https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html), with the exact
#: floors of the CUDA Toolkit Release Notes' table "CUDA Toolkit and Minimum Required Driver Version for
#: CUDA Minor Version Compatibility" (12.x >= 525.60.13, 11.x >= 450.80.02). A major not listed here is
#: reported as unknown, never as too old.
MIN_DRIVER_BY_CUDA_MAJOR: dict[int, tuple[int, ...]] = {
    13: (580,),
    12: (525, 60, 13),
    11: (450, 80, 2),
}

#: What ``--require-cuda`` tells a user with a CPU-only wheel to install; the file CI installs from.
PINNED_REQUIREMENTS = ".github/gpu-requirements.txt"


def _version_first_line(argv: Sequence[str]) -> str:
    """``argv`` run (it ends in ``--version``); the first line of its output. Raises OSError or
    subprocess.SubprocessError when the command cannot run or fails, as inductor's own probe does."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=True)
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else ""


def _inductor_cxx_candidates() -> tuple[str | None, ...]:
    """The compilers inductor's CPU backend would try, in order, as its own config lists them.

    On Linux and macOS ``torch._inductor.cpp_builder.get_cpp_compiler`` searches
    ``torch._inductor.config.cpp.cxx``: ``None`` (a g++ downloaded with conda, only when
    ``TORCH_INDUCTOR_INSTALL_GXX`` is set) then ``$CXX`` or ``g++`` (``clang++`` on macOS), keeping the
    first that answers ``--version``. On Windows it uses ``$CXX`` or ``cl``. Read from the config rather
    than copied, so that a torch that changes its default is reported as it is.
    """
    if sys.platform == "win32":
        return (os.environ.get("CXX", "cl"),)
    from torch._inductor import config  # heavy (2 s), and only needed here

    cxx = config.cpp.cxx
    return tuple(cxx) if isinstance(cxx, (list, tuple)) else (cxx,)


@dataclass(frozen=True)
class Probes:
    """Where doctor looks. ``None`` means the real thing (torch, pynvml, inductor's compiler list,
    ``sysconfig``'s include directory); tests pass fakes."""

    torch: Any = None
    nvml: Any = None
    which: Callable[[str], str | None] = shutil.which
    run: Callable[[Sequence[str]], str] = _version_first_line
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    cxx_candidates: Sequence[str | None] | None = None
    python_include: Path | None = None


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: str
    memory_total_bytes: int
    uuid: str | None  # as torch prints it; nvidia-smi and CUDA_VISIBLE_DEVICES write it as GPU-<uuid>


@dataclass(frozen=True)
class Driver:
    """The NVIDIA driver as NVML reports it: ``version``, or ``error`` saying why it could not be read."""

    version: str | None
    error: str | None = None

    def describe(self) -> str:
        return self.version if self.version is not None else f"unavailable: {self.error}"


@dataclass(frozen=True)
class Compiler:
    """The C++ compiler inductor would use (``command`` as configured, ``path`` on PATH), or none;
    ``tried`` says what was looked for and why each candidate was passed over."""

    command: str | None
    path: str | None
    version: str | None
    tried: tuple[str, ...]
    python_include: str
    python_h: bool


@dataclass(frozen=True)
class Report:
    python: str
    python_executable: str
    platform: str
    torch: str
    torch_cuda: str | None  # torch.version.cuda: None for a CPU-only (or ROCm) build
    torch_hip: str | None
    cuda_available: bool
    cuda_warning: str | None  # what torch warned while finding no usable CUDA, if anything
    cuda_visible_devices: str | None
    device_count: int
    devices: tuple[Gpu, ...]
    device_error: str | None
    driver: Driver
    driver_required: str | None  # the minimum for torch's CUDA major; None when unknown or not CUDA
    driver_ok: bool | None  # None when either side is unknown
    compiler: Compiler

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- probes


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """``"580.65.06"`` -> ``(580, 65, 6)``; None for anything that is not dot-separated numbers."""
    if not text:
        return None
    parts = text.strip().split(".")
    if not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def min_driver_for(torch_cuda: str | None) -> tuple[int, ...] | None:
    """The oldest driver for torch's CUDA (``"13.0"``), from :data:`MIN_DRIVER_BY_CUDA_MAJOR`."""
    version = parse_version(torch_cuda)
    return MIN_DRIVER_BY_CUDA_MAJOR.get(version[0]) if version else None


def driver_is_new_enough(driver: str | None, torch_cuda: str | None) -> bool | None:
    """True or False when both the driver and the floor for torch's CUDA are known, else None."""
    have, need = parse_version(driver), min_driver_for(torch_cuda)
    if have is None or need is None:
        return None
    # Tuples compare element by element; pad so that 580 and 580.0.0 are equal.
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def probe_driver(nvml: Any) -> Driver:
    """The driver version through NVML. Any NVMLError (no library, no driver, a call refused after init)
    becomes ``Driver(None, reason)``: a machine without a driver is a finding, not a crash."""
    if nvml is None:
        try:
            import pynvml  # nvidia-ml-py
        except ImportError as exc:
            return Driver(None, f"nvidia-ml-py is not installed ({exc})")
        nvml = pynvml
    with nvml_api.session(nvml) as (session, failed):
        if session is None:
            return Driver(None, str(failed) or type(failed).__name__)
        try:
            return Driver(nvml_api.text(session.nvmlSystemGetDriverVersion()))
        except nvml_api.error_type(session) as exc:
            return Driver(None, str(exc) or type(exc).__name__)


def probe_cuda(torch: Any) -> tuple[bool, str | None, int, tuple[Gpu, ...], str | None]:
    """``(available, warning, device_count, devices, device_error)`` from ``torch.cuda``."""
    cuda = torch.cuda
    # is_available() never raises: when it finds no usable CUDA, torch says why in a warning (e.g.
    # "CUDA initialization: The NVIDIA driver on your system is too old"); keep that sentence.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = bool(cuda.is_available())
    warning = "; ".join(str(w.message) for w in caught) or None
    if not available:
        return False, warning, 0, (), None
    count = int(cuda.device_count())
    devices: list[Gpu] = []
    try:
        for i in range(count):
            props = cuda.get_device_properties(i)
            uuid = getattr(props, "uuid", None)  # a torch._C._CUuuid; str() is its 8-4-4-4-12 hex form
            devices.append(Gpu(
                index=i,
                name=str(props.name),
                capability=f"{props.major}.{props.minor}",
                memory_total_bytes=int(props.total_memory),
                uuid=str(uuid) if uuid is not None else None,
            ))
    except (RuntimeError, AssertionError) as exc:
        # What torch raises when a device that was counted cannot be queried (CUDA errors surface as
        # RuntimeError, an index out of range as AssertionError); report it instead of crashing.
        return True, warning, count, tuple(devices), f"{type(exc).__name__}: {exc}"
    return True, warning, count, tuple(devices), None


def probe_compiler(probes: Probes) -> Compiler:
    """The first of inductor's compiler candidates that is on PATH and answers ``--version``."""
    candidates = probes.cxx_candidates if probes.cxx_candidates is not None else _inductor_cxx_candidates()
    include = probes.python_include or Path(sysconfig.get_path("include"))
    # Inductor's CPU kernels are loaded as Python extensions (#include <Python.h>), so the headers are
    # as necessary as the compiler (a python without its -dev package fails at the first compile).
    python_h = (include / "Python.h").exists()
    tried: list[str] = []
    for candidate in candidates:
        if candidate is None:
            if probes.environ.get("TORCH_INDUCTOR_INSTALL_GXX"):
                tried.append("g++ from conda (TORCH_INDUCTOR_INSTALL_GXX): inductor would download it; not probed")
            continue
        try:
            argv = shlex.split(candidate)
        except ValueError as exc:
            tried.append(f"{candidate!r}: cannot be split into a command ({exc})")
            continue
        if not argv:
            tried.append(f"{candidate!r}: empty command")
            continue
        path = probes.which(argv[0])
        if path is None:
            tried.append(f"{candidate}: not on PATH")
            continue
        try:
            version = probes.run([path, *argv[1:], "--version"])
        except (OSError, subprocess.SubprocessError) as exc:
            tried.append(f"{candidate}: `{candidate} --version` failed ({exc})")
            continue
        return Compiler(candidate, path, version, tuple(tried), str(include), python_h)
    return Compiler(None, None, None, tuple(tried), str(include), python_h)


def diagnose(probes: Probes | None = None) -> Report:
    """Everything doctor reports, gathered through ``probes``."""
    probes = probes or Probes()
    torch = probes.torch
    if torch is None:
        import torch  # here, so that `bench --help` stays cheap

    torch_cuda = getattr(torch.version, "cuda", None)
    available, warning, count, devices, device_error = probe_cuda(torch)
    # NVML is asked even when torch has no CUDA: "CPU-only wheel on a machine with a driver" and "no
    # driver at all" call for different fixes.
    driver = probe_driver(probes.nvml)
    required = min_driver_for(torch_cuda)
    return Report(
        python=platform.python_version(),
        python_executable=sys.executable,
        platform=f"{platform.system()} {platform.machine()}",
        torch=str(torch.__version__),
        torch_cuda=torch_cuda,
        torch_hip=getattr(torch.version, "hip", None),
        cuda_available=available,
        cuda_warning=warning,
        cuda_visible_devices=probes.environ.get("CUDA_VISIBLE_DEVICES"),
        device_count=count,
        devices=devices,
        device_error=device_error,
        driver=driver,
        driver_required=".".join(str(p) for p in required) if required else None,
        driver_ok=driver_is_new_enough(driver.version, torch_cuda),
        compiler=probe_compiler(probes),
    )


# -------------------------------------------------------------------------------------------- verdicts


def cuda_problem(report: Report) -> str | None:
    """One sentence on why CUDA cannot be used here and what to do, or None when it can."""
    torch_name = f"torch {report.torch}"
    if report.torch_cuda is None and report.torch_hip is None:
        return (
            f"{torch_name} is a CPU-only build (torch.version.cuda is None): install a CUDA build of torch, "
            f"e.g. `pip install -r {PINNED_REQUIREMENTS}` on Linux x86_64."
        )
    if report.driver_ok is False:
        return (
            f"the NVIDIA driver {report.driver.version} is older than {report.driver_required}, the minimum for "
            f"{torch_name}'s CUDA {report.torch_cuda}: upgrade the driver to {report.driver_required} or newer, "
            "or install a torch built for an older CUDA."
        )
    if not report.cuda_available:
        if report.driver.version is None and report.torch_hip is None:
            return (
                f"no NVIDIA driver could be found (NVML: {report.driver.error}), so {torch_name} "
                f"(CUDA {report.torch_cuda}) cannot use a GPU: install the NVIDIA driver "
                f"({report.driver_required or 'a recent one'} or newer), or run on a machine with an NVIDIA GPU."
            )
        build = f"CUDA {report.torch_cuda}" if report.torch_cuda else f"ROCm/HIP {report.torch_hip}"
        # On ROCm NVML knows nothing; name the driver only when there is one.
        driver = f" although the NVIDIA driver {report.driver.version} is there" if report.driver.version else ""
        why = f" (torch said: {report.cuda_warning})" if report.cuda_warning else ""
        visible = report.cuda_visible_devices
        mask = f"CUDA_VISIBLE_DEVICES={visible!r}, " if visible is not None else ""
        return (
            f"{torch_name} ({build}) sees no usable GPU{driver}{why}: check that the GPU is visible to this "
            f"process ({mask}the device nodes in a container) and that `nvidia-smi` works."
        )
    if report.device_error is not None:
        return (
            f"{torch_name} counts {report.device_count} GPU(s) but cannot query them ({report.device_error}): "
            "check `nvidia-smi` for a GPU in an error state, or reset or reboot the machine."
        )
    return None


def compiler_problem(report: Report) -> str | None:
    """One sentence on why torch.compile cannot build CPU kernels here and what to do, or None."""
    c = report.compiler
    if c.path is None:
        tried = "; ".join(c.tried) or "no candidates"
        return (
            f"no C++ compiler for torch.compile's CPU backend ({tried}): install g++ (e.g. `apt-get install g++`) "
            "or set CXX to a compiler on PATH."
        )
    if not c.python_h:
        return (
            f"Python.h is missing from {c.python_include}, which torch.compile's CPU kernels include: install "
            f"this Python's development headers (e.g. `apt-get install python{sys.version_info.major}."
            f"{sys.version_info.minor}-dev`)."
        )
    return None


