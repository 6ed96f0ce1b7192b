"""What bedrock-ft decides about the machine: the CPUs a process may use, and how its OpenMP threads wait.

Each check runs in a fresh interpreter: OpenMP reads its settings once, when torch loads, and
``import bedrock_ft`` must set them before that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bedrock_ft import _system

OMP_VARS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "BEDROCK_FT_THREADS")


def _run(code: str, *, prefix: tuple[str, ...] = (), **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return proc.stdout.strip()


SHOW = "import os, bedrock_ft; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OMP_NUM_THREADS'))"


def test_importing_bedrock_ft_makes_waiting_threads_yield_before_torch_loads() -> None:
    assert _run(SHOW) == f"PASSIVE {_system.usable_cpus()}"


def test_what_the_environment_says_wins() -> None:
    assert _run(SHOW, OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1") == "ACTIVE 1"


def test_bedrock_ft_threads_off_leaves_openmp_alone() -> None:
    assert _run(SHOW, BEDROCK_FT_THREADS="off") == "None None"


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
def test_the_affinity_mask_bounds_the_threads() -> None:
    code = "from bedrock_ft._system import usable_cpus; print(usable_cpus())"
    assert _run(code, prefix=("taskset", "-c", "0")) == "1"


def test_a_cgroup_quota_bounds_the_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(_system, "_CGROUP_V2", cpu_max)
    monkeypatch.setattr(_system, "_CGROUP_V1", (tmp_path / "none", tmp_path / "none"))
    cpu_max.write_text("max 100000\n")  # no quota
    assert _system._cgroup_cpus() is None
    cpu_max.write_text("50000 100000\n")  # half a CPU: one thread, never zero
    assert _system._cgroup_cpus() == 0.5
    assert _system.usable_cpus() == 1
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: two threads, if the affinity allows them
    assert _system.usable_cpus() == min(2, len(os.sched_getaffinity(0)))
    cpu_max.unlink()  # cgroup v1
    quota, period = tmp_path / "cfs_quota_us", tmp_path / "cfs_period_us"
    monkeypatch.setattr(_system, "_CGROUP_V1", (quota, period))
    quota.write_text("-1\n")
    period.write_text("100000\n")
    assert _system._cgroup_cpus() is None
    quota.write_text("100000\n")
    assert _system._cgroup_cpus() == 1.0
