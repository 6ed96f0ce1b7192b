"""The one training entrypoint, and the launcher's plan: what runs where, refused before a process starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig, TrainingError
from bedrock_ft.artifacts import DatasetArtifact
from bedrock_ft.training._launch import plan_launch

from .conftest import FAST

MISTRAL_7B_CONFIG = {
    "model_type": "mistral", "vocab_size": 32768, "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
    "max_position_embeddings": 32768, "tie_word_embeddings": False,
}  # fmt: skip


def _entrypoint(config: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bedrock_ft.training.entrypoint", str(config)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _plan(**settings: object) -> Any:
    training = TrainingConfig(backend="accelerate", **settings)  # type: ignore[arg-type]
    return plan_launch(QLoRAConfig(), training, MISTRAL_7B_CONFIG, lambda _: None)


def test_on_cpu_the_launcher_plans_two_gloo_ranks() -> None:
    plan = _plan(max_length=64, per_device_batch_size=1, memory_guard=False)
    assert (plan.device, plan.world_size, plan.strategy, plan.precision) == ("cpu", 2, "ddp", "float32")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"strategy": "fsdp"}, r"strategy='fsdp' needs CUDA GPUs .* use strategy='ddp'"),
        ({"device": "cuda"}, r"device='cuda' but torch sees no CUDA GPU"),
        ({"num_processes": 3, "per_device_batch_size": 2, "global_batch_size": 8},
         r"global_batch_size 8 doesn't divide across 3 rank\(s\)"),
    ],
)  # fmt: skip
def test_impossible_launches_are_refused_before_anything_starts(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(TrainingError, match=message):
        _plan(**settings)


def test_the_memory_guard_counts_every_rank_on_one_machine() -> None:
    # Mistral-7B with 64 sequences of 4096 tokens per process: no CPU holds two of those.
    with pytest.raises(
        TrainingError, match=r"strategy ddp needs .* per process \(2 share the RAM\).*Lower per_device"
    ):
        _plan(per_device_batch_size=64, max_length=4096, num_processes=2)


def test_callbacks_cant_cross_into_other_processes(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    training = TrainingConfig(output_dir=str(tmp_path / "run"), backend="accelerate", **FAST)
    with pytest.raises(TrainingError, match="callbacks run in this process"):
        QLoRATrainer(QLoRAConfig(), training, callbacks=[object()]).train(qa_dataset)


@pytest.mark.slow
def test_the_entrypoint_trains_from_one_config_file(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    config = tmp_path / "train.json"
    training = TrainingConfig(output_dir=str(tmp_path / "run"), max_steps=2, **FAST)
    settings = {
        "dataset": str(Path(qa_dataset.train_uri).parent),
        "training": training.model_dump(mode="json"),
    }
    config.write_text(json.dumps(settings))
    done = _entrypoint(config)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"adapter: {tmp_path / 'run' / 'adapter'}" in done.stdout
    assert (tmp_path / "run" / "manifest.json").is_file()


def test_the_entrypoint_names_a_bad_field_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("dataset: data\ntraining:\n  backend: slurm\n")
    done = _entrypoint(config)
    assert done.returncode == 1
    assert "training.backend" in done.stderr and "slurm" in done.stderr
