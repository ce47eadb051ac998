"""What a results file says about the run that made it: ``machine_info.archbench``.

One function, called by the measurement session (:mod:`bench.measure.session`) whichever command drives
it, so that every file carries the same provenance and ``bench compare`` reads them all the same way.
"""

from __future__ import annotations

from typing import Any

from bench.measure.devices import Device
from bench.record.profiles import Profile


def archbench_info(device: Device, profile: Profile, seed: int, data: str) -> dict[str, Any]:
    """The ``archbench`` block of ``machine_info``: device, profile and its settings, seed, library
    versions, and whether fixed-seed training is bitwise reproducible on this device."""
    import torch
    import torchvision

    import bench

    info = dict(device.info())
    cudnn = torch.backends.cudnn
    info.update(
        profile=profile.name,
        profile_settings={k: v for k, v in vars(profile).items() if k != "name"},
        seed=seed,
        torch=torch.__version__,
        torchvision=torchvision.__version__,
        cuda=torch.version.cuda,
        cudnn=cudnn.version() if cudnn.is_available() else None,
        # what the accuracy benchmarks train under (timing runs never force determinism)
        deterministic=device.bitwise_deterministic,
        # cuDNN's deterministic/benchmark flags and TF32 are per record, read while each case ran: read
        # here, after the run, they would describe nothing that was measured.
        suite_version=bench.__version__,
        data=data,
    )
    return info
