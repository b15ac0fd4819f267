"""What machine and software a result was measured with."""

from __future__ import annotations

import contextlib
import os
import platform
import sys


def machine_info() -> dict:
    """CPU model, core count, GPU (if any), Python and library versions."""
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:  # Linux names the model; elsewhere keep the above
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    info = dict(cpu=cpu, cpus=os.cpu_count(), platform=platform.platform(), python=sys.version.split()[0],
                torch=torch.__version__, numpy=numpy.__version__, torch_threads=torch.get_num_threads())
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
