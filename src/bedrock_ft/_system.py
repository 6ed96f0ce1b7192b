"""What this process may use of the machine: CPUs (affinity and cgroup quota), free memory, and how its
CPU threads wait.

Shared by training, merging and the local Bedrock's engine; no torch at import.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

__all__ = ["THREADS_ENV", "available_memory", "configure_cpu_threads", "prepare_openmp", "usable_cpus"]

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


# --- CPU threads ------------------------------------------------------------------------------------

THREADS_ENV = "BEDROCK_FT_THREADS"
"""``auto`` (default): bedrock-ft sizes CPU threads and their wait policy; ``off``: it leaves both alone."""

_PASSIVE = "PASSIVE"


def prepare_openmp() -> None:
    """Before torch loads (it reads these once, when its OpenMP runtime starts): threads that wait at a
    barrier yield their core instead of spinning on it, and there are as many threads as this process
    may use. Values already in the environment are kept.

    Spinning is what made CPU training collapse next to another busy process: with two threads on two
    shared cores, one thread is often descheduled, and the other burns its time slice waiting for it.
    """
    if os.environ.get(THREADS_ENV, "auto") == "off" or "torch" in sys.modules:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", _PASSIVE)
    os.environ.setdefault("OMP_NUM_THREADS", str(usable_cpus()))


def configure_cpu_threads() -> str:
    """For CPU work that starts now (training): torch's intra-op threads sized to :func:`usable_cpus`
    (unless OMP_NUM_THREADS says otherwise). Returns a line for the progress log, with a hint when
    torch was loaded before bedrock-ft with OpenMP threads that spin."""
    import torch

    if os.environ.get(THREADS_ENV, "auto") == "off":
        return f"{torch.get_num_threads()} CPU thread(s), as configured outside bedrock-ft"
    wanted = os.environ.get("OMP_NUM_THREADS")
    threads = int(wanted) if wanted and wanted.isdigit() and int(wanted) > 0 else usable_cpus()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    policy = os.environ.get("OMP_WAIT_POLICY", "").upper()
    line = f"{threads} CPU thread(s), OpenMP wait policy {policy or 'default (spinning)'}"
    if policy != _PASSIVE:
        line += (
            "; if another process keeps the CPU busy, training slows sharply: set OMP_WAIT_POLICY=PASSIVE "
            "before torch is imported (importing bedrock_ft first does it)"
        )
    return line
