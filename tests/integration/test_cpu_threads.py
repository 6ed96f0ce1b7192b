"""CPU training's threads: sized to the CPUs this process may use, whatever torch started with."""

from __future__ import annotations

import pytest


def test_torch_threads_follow_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from bedrock_ft._system import configure_cpu_threads, usable_cpus

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(usable_cpus() + 3)  # as on a host with more cores than the process may use
        line = configure_cpu_threads()
        assert torch.get_num_threads() == usable_cpus()
        assert line.startswith(f"{usable_cpus()} CPU thread(s)")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the environment wins
        configure_cpu_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # spinning threads: the log says what to do
        assert "set OMP_WAIT_POLICY=PASSIVE before torch is imported" in configure_cpu_threads()
        monkeypatch.setenv("BEDROCK_FT_THREADS", "off")
        torch.set_num_threads(3)
        assert configure_cpu_threads().startswith("3 CPU thread(s), as configured outside bedrock-ft")
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
