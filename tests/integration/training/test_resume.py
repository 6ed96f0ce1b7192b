"""A run killed with SIGKILL mid-way resumes from its last complete checkpoint and ends on the same step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig
from bedrock_ft.artifacts import DatasetArtifact

from .conftest import FAST

pytestmark = pytest.mark.slow

MAX_STEPS = 8

SCRIPT = """
import sys
from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig
training = TrainingConfig.from_file(sys.argv[1])
QLoRATrainer(QLoRAConfig(), training, progress_bar=False).train(sys.argv[2])
"""


def _events(run: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_then_resume_continues_from_the_last_checkpoint(
    qa_dataset: DatasetArtifact, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    training = TrainingConfig(output_dir=str(run), max_steps=MAX_STEPS, save_steps=2, **FAST)
    config = training.to_file(tmp_path / "training.yaml")
    dataset_dir = Path(qa_dataset.train_uri).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(config), str(dataset_dir)], env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "manifest.json").exists()  # killed: no artifact claims the run finished
    steps_before = max(e["step"] for e in _events(run) if e["event"] == "log")
    assert 2 <= steps_before < MAX_STEPS

    # Without resume, the interrupted run is not silently overwritten.
    from bedrock_ft import TrainingError

    with pytest.raises(TrainingError, match=r"holds an interrupted run .*resume=True continues it"):
        QLoRATrainer(QLoRAConfig(), training, progress_bar=False).train(qa_dataset)

    trainer = QLoRATrainer(QLoRAConfig(), training.replace(resume=True), progress_bar=False)
    adapter = trainer.train(qa_dataset)
    assert adapter.train_metrics.global_step == MAX_STEPS
    # The run's loss covers every step, before and after the kill (the Trainer's own figure would not).
    losses = [e["loss"] for e in _events(run) if e["event"] == "log" and "loss" in e]
    assert min(losses) <= adapter.train_metrics.train_loss <= max(losses)
    starts = [e for e in _events(run) if e["event"] == "start"]
    assert len(starts) == 2
    resumed_at = starts[1]["step"]
    assert starts[1]["resumed"] and isinstance(resumed_at, int) and resumed_at >= 2 and resumed_at % 2 == 0
    # The resumed run did only the remaining optimizer steps.
    assert len(trainer.monitor.step_seconds) == MAX_STEPS - resumed_at
    logged_after = [
        e["step"]
        for e in _events(run)[_events(run).index(starts[1]) :]
        if e["event"] == "log" and "loss" in e
    ]
    assert logged_after == list(range(resumed_at + 1, MAX_STEPS + 1))
