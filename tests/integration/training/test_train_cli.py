"""`bedrock-ft train CONFIG`: a config file in, an adapter and its manifest out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bedrock_ft import AdapterArtifact

pytestmark = pytest.mark.slow


def test_train_from_a_config_file_with_assistant_only_loss(
    run_cli: Any, embedded_dir: Path, train_model_dir: Path, tmp_path: Path
) -> None:
    from bedrock_ft.data import build_synthetic_dataset

    # The built-in chatml template marks assistant turns with {% generation %}, so assistant-only loss works.
    dataset = build_synthetic_dataset(
        tmp_path / "data", n=20, tokenizer=str(embedded_dir), chat_template="chatml"
    )
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "dataset": str(tmp_path / "data"),
                "qlora": {"r": 8, "alpha": 16},
                "training": {
                    "base_model": str(train_model_dir),
                    "output_dir": str(tmp_path / "run"),
                    "max_steps": 2,
                    "max_length": 128,
                    "per_device_batch_size": 2,
                    "assistant_only_loss": True,
                    "logging_steps": 1,
                    "tensorboard": False,
                },
            }
        )
    )
    code, out, err = run_cli("train", str(config), "--json")
    assert code == 0, err
    adapter = AdapterArtifact.model_validate(json.loads(out))
    assert adapter.train_metrics.global_step == 2
    assert adapter.lora.r == 8
    assert adapter.train_metrics.first_loss > 0  # an empty assistant mask would give a zero loss
    assert adapter.chat_template == dataset.chat_template and "{%- generation -%}" in (
        adapter.chat_template or ""
    )
    assert AdapterArtifact.read(tmp_path / "run") == adapter
    # Progress went to stderr, one line per stage.
    assert "loading " in err and "saving the adapter to" in err
    assert "CPU thread(s), OpenMP wait policy" in err  # threads sized for this machine, and said so
    assert "fused LoRA off: it runs on CUDA GPUs and this run trains on CPU" in err  # never silently

    # Again, without --resume: refused, with the reason on one line and exit status 1.
    code, out, err = run_cli("train", str(config))
    assert code == 1
    assert "holds a finished run" in err and "--resume" not in out
    # With --resume: the finished run comes back as it is.
    code, out, err = run_cli("train", str(config), "--resume")
    assert code == 0, err
    assert out.startswith(f"adapter: {adapter.adapter_dir}\nsteps: 2;")


def test_train_config_file_errors(run_cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("dataset: somewhere\ntraining:\n  max_step: 3\n  learning_rate: -1\nextra: 1\n")
    code, _, err = run_cli("train", str(config))
    assert code == 1
    assert "unknown top-level key(s) 'extra'" in err
    config.write_text("dataset: somewhere\ntraining:\n  max_step: 3\n  learning_rate: -1\n")
    code, _, err = run_cli("train", str(config))
    assert code == 1
    assert "max_step" in err and "learning_rate" in err  # every problem at once
