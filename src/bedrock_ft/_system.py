"""What this process may use of the machine: CPUs (affinity and cgroup quota), free memory.

Shared by training, merging and the local Bedrock's engine; no torch at import.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["available_memory", "usable_cpus"]

_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def _cgroup_cpus() -> float | None:
    """The container's CPU quota in CPUs (cgroup v2, else v1), or None when there is none."""
    try:
        quota, period = _CGROUP_V2.read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(_CGROUP_V1[0].read_text())
        period_us = int(_CGROUP_V1[1].read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (a container
    limited to 1.5 CPUs gets 2; torch would start one thread per core the host has)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def available_memory(device: str) -> tuple[int, str]:
    """Free bytes on the device, and what they are (for messages)."""
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free), f"free on {torch.cuda.get_device_name(0)}"
    import psutil

    return int(psutil.virtual_memory().available), "available RAM"

