"""Bad input to QLoRATrainer: each gets a TrainingError or DatasetError naming the problem, before any
model is loaded (these tests take seconds)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import pytest

from bedrock_ft import DatasetError, QLoRAConfig, QLoRATrainer, TrainingConfig, TrainingError
from bedrock_ft.artifacts import DatasetArtifact

from .conftest import FAST


def _trainer(tmp_path: Path, **changes: object) -> QLoRATrainer:
    training = TrainingConfig(output_dir=str(tmp_path / "run"), max_steps=2, **{**FAST, **changes})
    return QLoRATrainer(QLoRAConfig(), training, progress_bar=False)


def _copy_dataset(qa_dataset: DatasetArtifact, tmp_path: Path) -> Path:
    src = Path(qa_dataset.train_uri).parent
    dst = tmp_path / "dataset"
    shutil.copytree(src, dst)
    return dst


def test_missing_training_file(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    data = _copy_dataset(qa_dataset, tmp_path)
    (data / "train_dataset.json").unlink()
    with pytest.raises(DatasetError, match=r"train_dataset\.json: the dataset's training file is missing"):
        _trainer(tmp_path).train(data)
    assert not (tmp_path / "run").exists()


def test_records_without_messages_name_the_line(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    data = _copy_dataset(qa_dataset, tmp_path)
    train = data / "train_dataset.json"
    lines = train.read_text().splitlines()
    lines[4] = json.dumps({"text": "no messages here"})
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DatasetError, match=r"record 4, field 'messages': .*train_dataset\.json line 5: no 'messages'"
    ):
        _trainer(tmp_path).train(data)


def test_records_with_a_bad_message(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    data = _copy_dataset(qa_dataset, tmp_path)
    train = data / "train_dataset.json"
    lines = train.read_text().splitlines()
    lines[0] = json.dumps({"messages": [{"role": "user", "content": 3}]})
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DatasetError, match=r"line 1: messages\[0\] must be an object with string 'role' and 'content'"
    ):
        _trainer(tmp_path).train(data)


def test_a_missing_manifest(tmp_path: Path) -> None:
    from bedrock_ft import ArtifactError

    with pytest.raises(ArtifactError, match="no manifest here"):
        _trainer(tmp_path).train(tmp_path)


@pytest.mark.parametrize("remove", ["config.json", "weights"])
def test_a_base_model_dir_without_config_or_weights(
    qa_dataset: DatasetArtifact, train_model_dir: Path, tmp_path: Path, remove: str
) -> None:
    base = tmp_path / "base"
    shutil.copytree(train_model_dir, base)
    for f in base.iterdir():
        if (remove == "weights" and f.suffix == ".safetensors") or f.name == remove:
            f.unlink()
    message = "no config.json" if remove == "config.json" else r"no weights \(\*\.safetensors\)"
    with pytest.raises(TrainingError, match=f"base_model {base}: {message}"):
        _trainer(tmp_path, base_model=str(base)).train(qa_dataset)


def test_max_length_beyond_the_context(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    with pytest.raises(
        TrainingError, match=r"max_length 16384 is longer than the model's context \(8192 tokens"
    ):
        _trainer(tmp_path, max_length=16384).train(qa_dataset)


def test_assistant_only_loss_without_generation_blocks(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    # The embedded model's own ChatML template has no {% generation %} block.
    with pytest.raises(
        TrainingError, match=r"(?s)needs a chat template that marks.*\{% generation %\}.*chatml"
    ):
        _trainer(tmp_path, assistant_only_loss=True).train(qa_dataset)


def test_the_memory_guard_stops_before_loading(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    huge = {"per_device_batch_size": 4096, "max_length": 8192, "gradient_checkpointing": False}
    with pytest.raises(
        TrainingError,
        match=r"needs ~[\d.]+ GiB .* but cpu has [\d.]+ GiB available RAM\. "
        r"Turn gradient_checkpointing on, or lower per_device_batch_size \(now 4096",
    ):
        _trainer(tmp_path, **huge).train(qa_dataset)


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_asked_for_but_not_installed(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="tensorboard=True but tensorboard is not installed"):
        _trainer(tmp_path, tensorboard=True).train(qa_dataset)


def test_a_directory_that_is_not_a_run_is_never_deleted(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    precious = tmp_path / "run" / "thesis.tex"
    precious.parent.mkdir()
    precious.write_text("years of work")
    with pytest.raises(TrainingError, match="not a bedrock-ft run"):
        _trainer(tmp_path, overwrite=True).train(qa_dataset)
    assert precious.read_text() == "years of work"


def test_bf16_without_hardware_support_falls_back_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from bedrock_ft.training import _model as model

    # The hardware probe is the one thing faked: CI's CPU may well have bfloat16.
    monkeypatch.setattr(model, "bf16_supported", lambda device: False)
    with pytest.warns(UserWarning, match="no bfloat16 support; training in float32 instead"):
        precision = model.resolve_precision("bfloat16", "cpu")
    assert precision.dtype == torch.float32 and precision.trainer_flags == {"bf16": False, "fp16": False}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.resolve_precision("auto", "cpu").name == "float32"  # auto never warns


def test_out_of_memory_during_training_becomes_a_training_error(
    qa_dataset: DatasetArtifact, tmp_path: Path
) -> None:
    import torch
    from transformers import TrainerCallback

    class OutOfMemoryAtStep2(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: object, state: object, control: object, **kwargs: object) -> None:
            if state.global_step == 1:  # type: ignore[attr-defined]
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    training = TrainingConfig(output_dir=str(tmp_path / "run"), max_steps=3, save_steps=1, **FAST)
    trainer = QLoRATrainer(QLoRAConfig(), training, progress_bar=False, callbacks=[OutOfMemoryAtStep2()])
    with pytest.raises(
        TrainingError,
        match=r"out of memory at step 1: lower per_device_batch_size \(now 4.*max_length \(now 128\)"
        r".*Checkpoints saved so far are kept",
    ) as info:
        trainer.train(qa_dataset)
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-1" / "trainer_state.json").is_file()
