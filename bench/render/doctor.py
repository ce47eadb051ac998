"""What ``bench doctor`` shows: the probed machine as a two-column table."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from bench.measure.probe import Report


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def doctor_table(report: Report) -> Table:
    """The report as a two-column rich table."""
    table = Table(title="bench doctor", show_header=False, title_justify="left")
    table.add_column("check", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("python", f"{report.python} ({report.python_executable})")
    table.add_row("platform", report.platform)
    build = (f"CUDA {report.torch_cuda}" if report.torch_cuda else
             f"ROCm/HIP {report.torch_hip}" if report.torch_hip else "CPU-only build")
    table.add_row("torch", f"{report.torch} ({build})")
    avail = Text("yes", style="green") if report.cuda_available else Text("no", style="yellow")
    if report.cuda_warning:
        avail.append(f" ({report.cuda_warning})")
    table.add_row("torch.cuda.is_available()", avail)
    if report.cuda_visible_devices is not None:
        table.add_row("CUDA_VISIBLE_DEVICES", report.cuda_visible_devices)
    table.add_row("devices", str(report.device_count))
    for gpu in report.devices:
        table.add_row(
            f"  cuda:{gpu.index}",
            f"{gpu.name}, capability {gpu.capability}, {_gib(gpu.memory_total_bytes)}, UUID {gpu.uuid or 'unknown'}",
        )
    if report.device_error:
        table.add_row("  device error", Text(report.device_error, style="red"))
    table.add_row("NVIDIA driver (NVML)", report.driver.describe())
    if report.driver_required is None:
        needed = Text("unknown (no table entry for this CUDA)" if report.torch_cuda else "n/a (no CUDA build)")
    elif report.driver_ok is None:
        needed = Text(f">= {report.driver_required} needed; driver version unknown", style="yellow")
    elif report.driver_ok:
        needed = Text(f"yes (>= {report.driver_required} for CUDA {report.torch_cuda})", style="green")
    else:
        needed = Text(f"no: >= {report.driver_required} needed for CUDA {report.torch_cuda}", style="bold red")
    table.add_row("driver new enough", needed)
    c = report.compiler
    cxx = Text(f"{c.command} -> {c.path} ({c.version})") if c.path else Text("none found", style="yellow")
    if c.tried:
        cxx.append(f"  [passed over: {'; '.join(c.tried)}]")
    table.add_row("C++ compiler (inductor)", cxx)
    table.add_row("Python.h", Text(f"in {c.python_include}") if c.python_h
                  else Text(f"missing from {c.python_include}", style="yellow"))
    return table
