"""bench doctor: GPU machines, old drivers, broken NVML and missing compilers through fakes (there is no GPU
here), and the real probes on this machine."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from bench import commands as cli
from bench.commands.doctor import DoctorOptions
from bench.commands.doctor import run as doctor_run
from bench.measure import probe as doctor
from bench.measure.probe import Probes

UUID = "6f0c9a1e-3b2d-4c5e-8f7a-9b0c1d2e3f40"


class FakeUuid:
    """torch._C._CUuuid: only str() gives the text."""

    def __str__(self) -> str:
        return UUID


class FakeCuda:
    def __init__(self, available: bool, count: int = 1, warning: str | None = None) -> None:
        self.available, self.count, self.warning = available, count, warning

    def is_available(self) -> bool:
        if self.warning:
            import warnings

            warnings.warn(self.warning, UserWarning, stacklevel=2)
        return self.available

    def device_count(self) -> int:
        return self.count

    def get_device_properties(self, index: int) -> SimpleNamespace:
        return SimpleNamespace(name="NVIDIA L4", major=8, minor=9, total_memory=23 * 2**30, uuid=FakeUuid())


def fake_torch(cuda_build: str | None, cuda: FakeCuda) -> SimpleNamespace:
    version = "2.14.1+cu130" if cuda_build else "2.14.1+cpu"
    return SimpleNamespace(__version__=version, version=SimpleNamespace(cuda=cuda_build, hip=None), cuda=cuda)


class FakeNvml:
    """pynvml with a driver version, or an NVMLError from init or from the version call."""

    class NVMLError(Exception):
        pass

    def __init__(self, driver: str | bytes = "580.65.06", fail_init: str | None = None,
                 fail_version: str | None = None) -> None:
        self.driver, self.fail_init, self.fail_version = driver, fail_init, fail_version
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.fail_init:
            raise self.NVMLError(self.fail_init)

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        self.calls.append("version")
        if self.fail_version:
            raise self.NVMLError(self.fail_version)
        return self.driver

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")


def gxx_on_path(name: str) -> str | None:
    return f"/usr/bin/{name}" if name == "g++" else None


def gxx_version(argv: Sequence[str]) -> str:
    assert argv[-1] == "--version"
    return "g++ (Debian 12.2.0) 12.2.0"


def probes(tmp_path: Path, *, torch: Any, nvml: Any = None, which: Any = gxx_on_path,
           environ: dict[str, str] | None = None, headers: bool = True, **kw: Any) -> Probes:
    include = tmp_path / "include"
    include.mkdir(exist_ok=True)
    if headers:
        (include / "Python.h").write_text("/* fake */\n")
    return Probes(
        torch=torch, nvml=nvml if nvml is not None else FakeNvml(), which=which, run=kw.pop("run", gxx_version),
        environ=environ if environ is not None else {}, cxx_candidates=kw.pop("cxx", (None, "g++")),
        python_include=include,
    )


def run(options: DoctorOptions, p: Probes) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = doctor_run(options, Console(file=out, width=200), Console(file=err, width=200), p)
    return code, out.getvalue(), err.getvalue()


REQUIRE_ALL = DoctorOptions(require_cuda=True, require_compiler=True)


def test_cpu_only_wheel_with_require_cuda_exits_2_with_one_sentence(tmp_path: Path) -> None:
    p = probes(tmp_path, torch=fake_torch(None, FakeCuda(available=False)),
               nvml=FakeNvml(fail_init="NVML Shared Library Not Found"))
    code, out, err = run(DoctorOptions(require_cuda=True), p)
    assert code == 2
    message = err.strip()
    assert message.count("\n") == 0, "one sentence, one line"
    assert "CPU-only build" in message and "torch.version.cuda is None" in message
    assert "pip install -r .github/gpu-requirements.txt" in message
    assert "CPU-only build" in out  # the table says so too


def test_cpu_only_wheel_without_require_cuda_is_information(tmp_path: Path) -> None:
    p = probes(tmp_path, torch=fake_torch(None, FakeCuda(available=False)))
    code, out, err = run(DoctorOptions(), p)
    assert code == 0 and err == ""
    assert "note: torch 2.14.1+cpu is a CPU-only build" in out


def test_cuda_available_and_driver_new_enough_exits_0_and_lists_the_uuid(tmp_path: Path) -> None:
    nvml = FakeNvml(driver=b"580.65.06")  # old nvidia-ml-py returned bytes
    p = probes(tmp_path, torch=fake_torch("13.0", FakeCuda(available=True, count=2)), nvml=nvml,
               environ={"CUDA_VISIBLE_DEVICES": "0,1"})
    code, out, err = run(REQUIRE_ALL, p)
    assert code == 0, err
    assert err == ""
    assert out.count(UUID) == 2
    assert "NVIDIA L4, capability 8.9, 23.0 GiB" in out
    assert "580.65.06" in out and "yes (>= 580 for CUDA 13.0)" in out
    assert nvml.calls == ["init", "version", "shutdown"]

    code, out, _ = run(DoctorOptions(require_cuda=True, as_json=True), p)
    report = json.loads(out)
    assert code == 0 and report["problems"] == []
    assert [d["uuid"] for d in report["devices"]] == [UUID, UUID]
    assert report["driver"] == {"version": "580.65.06", "error": None}
    assert report["driver_ok"] is True and report["driver_required"] == "580"
    assert report["cuda_visible_devices"] == "0,1"


@pytest.mark.parametrize("available", [False, True])
def test_driver_too_old_for_torchs_cuda_exits_2(tmp_path: Path, available: bool) -> None:
    cuda = FakeCuda(available=available, warning=None if available else
                    "CUDA initialization: The NVIDIA driver on your system is too old (found version 12020)")
    p = probes(tmp_path, torch=fake_torch("13.0", cuda), nvml=FakeNvml(driver="535.104.05"))
    code, out, err = run(DoctorOptions(require_cuda=True), p)
    assert code == 2
    assert "the NVIDIA driver 535.104.05 is older than 580" in err
    assert "CUDA 13.0" in err and "upgrade the driver" in err
    assert "no: >= 580 needed for CUDA 13.0" in out


def test_nvml_error_after_init_degrades_with_the_reason(tmp_path: Path) -> None:
    nvml = FakeNvml(fail_version="Driver Not Loaded")
    p = probes(tmp_path, torch=fake_torch("13.0", FakeCuda(available=True)), nvml=nvml)
    code, out, err = run(DoctorOptions(require_cuda=True), p)
    assert code == 0, err  # torch can use the GPU; only the driver's version is unknown
    assert "unavailable: Driver Not Loaded" in out
    assert "driver version unknown" in out
    assert nvml.calls == ["init", "version", "shutdown"], "NVML is shut down after a failed call"
    assert doctor.probe_driver(nvml) == doctor.Driver(None, "Driver Not Loaded")


def test_no_nvml_library_and_no_gpu_says_to_install_the_driver(tmp_path: Path) -> None:
    nvml = FakeNvml(fail_init="NVML Shared Library Not Found")
    p = probes(tmp_path, torch=fake_torch("13.0", FakeCuda(available=False)), nvml=nvml)
    code, _, err = run(DoctorOptions(require_cuda=True), p)
    assert code == 2
    assert "no NVIDIA driver could be found (NVML: NVML Shared Library Not Found)" in err
    assert "install the NVIDIA driver (580 or newer)" in err
    assert nvml.calls == ["init"], "no shutdown after a failed init"


def test_driver_present_but_no_visible_gpu_points_at_the_mask(tmp_path: Path) -> None:
    p = probes(tmp_path, torch=fake_torch("13.0", FakeCuda(available=False)), environ={"CUDA_VISIBLE_DEVICES": ""})
    code, _, err = run(DoctorOptions(require_cuda=True), p)
    assert code == 2
    assert "sees no usable GPU although the NVIDIA driver 580.65.06 is there" in err
    assert "CUDA_VISIBLE_DEVICES=''" in err


def test_missing_compiler_with_require_compiler_exits_2(tmp_path: Path) -> None:
    p = probes(tmp_path, torch=fake_torch("13.0", FakeCuda(available=True)), which=lambda name: None,
               cxx=(None, "g++"))
    code, out, err = run(DoctorOptions(require_compiler=True), p)
    assert code == 2
    assert "no C++ compiler for torch.compile's CPU backend (g++: not on PATH)" in err
    assert "set CXX" in err
    assert "none found" in out
    # not required: reported, exit 0
    assert run(DoctorOptions(), p)[0] == 0


def test_compiler_that_does_not_run_is_passed_over(tmp_path: Path) -> None:
    def broken(argv: Sequence[str]) -> str:
        if argv[0].endswith("clang++"):
            raise subprocess.CalledProcessError(1, list(argv))
        return "g++ 12"

    p = probes(tmp_path, torch=fake_torch(None, FakeCuda(available=False)), which=lambda n: f"/opt/bin/{n}",
               run=broken, cxx=("clang++", "g++"))
    compiler = doctor.diagnose(p).compiler
    assert compiler.command == "g++" and compiler.path == "/opt/bin/g++" and compiler.version == "g++ 12"
    assert len(compiler.tried) == 1 and compiler.tried[0].startswith("clang++: `clang++ --version` failed")


def test_cxx_with_arguments_is_split_like_inductor_does(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def version(argv: Sequence[str]) -> str:
        seen.append(list(argv))
        return "ccache g++"

    p = probes(tmp_path, torch=fake_torch(None, FakeCuda(available=False)), which=lambda n: f"/usr/bin/{n}",
               run=version, cxx=(None, "ccache g++"))
    compiler = doctor.diagnose(p).compiler
    assert compiler.command == "ccache g++" and compiler.path == "/usr/bin/ccache"
    assert seen == [["/usr/bin/ccache", "g++", "--version"]]


def test_missing_python_headers_fail_require_compiler(tmp_path: Path) -> None:
    p = probes(tmp_path, torch=fake_torch(None, FakeCuda(available=False)), headers=False)
    code, _, err = run(DoctorOptions(require_compiler=True), p)
    assert code == 2
    assert "Python.h is missing" in err and "development headers" in err


def test_github_actions_gets_an_error_annotation(tmp_path: Path) -> None:
    p = probes(tmp_path, torch=fake_torch(None, FakeCuda(available=False)), environ={"GITHUB_ACTIONS": "true"})
    code, out, _ = run(DoctorOptions(require_cuda=True), p)
    assert code == 2
    annotations = [line for line in out.splitlines() if line.startswith("::error")]
    assert len(annotations) == 1 and "CPU-only build" in annotations[0]


@pytest.mark.parametrize(("driver", "cuda", "ok"), [
    ("580.65.06", "13.0", True),
    ("580", "13.2", True),
    ("575.57.08", "13.0", False),
    ("525.60.13", "12.8", True),
    ("525.60.11", "12.1", False),
    ("450.80.02", "11.8", True),
    ("999.1", "14.0", None),  # a CUDA major the table does not know: unknown, never "too old"
    (None, "13.0", None),
    ("580.65.06", None, None),
    ("not-a-version", "13.0", None),
])
def test_driver_is_new_enough(driver: str | None, cuda: str | None, ok: bool | None) -> None:
    assert doctor.driver_is_new_enough(driver, cuda) is ok


def test_inductor_candidates_come_from_its_config() -> None:
    from torch._inductor import config

    assert doctor._inductor_cxx_candidates() == tuple(config.cpp.cxx)


def test_the_real_probes_on_this_machine_work_without_require_cuda() -> None:
    # No GPU here: CUDA and the driver are findings, not errors.
    code, out, err = run(DoctorOptions(), Probes())
    assert code == 0, err
    assert "torch.cuda.is_available()" in out and "NVIDIA driver (NVML)" in out


def test_the_cli_runs_doctor_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"torch", "torch_cuda", "cuda_available", "devices", "driver", "compiler", "problems"} <= set(report)
