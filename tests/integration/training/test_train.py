"""QLoRATrainer on the embedded model, on CPU: real 4-bit weights, real optimizer steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

from bedrock_ft import AdapterArtifact, QLoRAConfig, QLoRATrainer, TrainingConfig, TrainingError
from bedrock_ft.artifacts import DatasetArtifact

from .conftest import FAST

pytestmark = pytest.mark.slow


class GradientProbe(TrainerCallback):  # type: ignore[misc]
    """Records, at the first optimizer step, which lora_B weights got a non-zero gradient."""

    def __init__(self) -> None:
        self.lora_b: dict[str, bool] = {}
        self.lora_b_dtypes: set[str] = set()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.lora_b:
            return
        for name, param in kwargs["model"].named_parameters():
            if "lora_B" in name:
                self.lora_b[name] = param.grad is not None and bool(param.grad.abs().sum() > 0)
                self.lora_b_dtypes.add(str(param.dtype))


@pytest.fixture(scope="module")
def qlora_run(
    qa_dataset: DatasetArtifact, tmp_path_factory: pytest.TempPathFactory
) -> tuple[AdapterArtifact, GradientProbe, Path]:
    out = tmp_path_factory.mktemp("qlora-run") / "run"
    probe = GradientProbe()
    training = TrainingConfig(output_dir=str(out), max_steps=6, save_steps=3, **FAST)
    trainer = QLoRATrainer(QLoRAConfig(), training, progress_bar=False, callbacks=[probe])
    return trainer.train(qa_dataset), probe, out


def test_every_lora_b_gets_a_gradient_in_the_first_step(
    qlora_run: tuple[AdapterArtifact, GradientProbe, Path],
) -> None:
    # The bitsandbytes CPU trap (a no-grad forward before training) leaves most lora_B at zero gradient.
    _, probe, _ = qlora_run
    assert len(probe.lora_b) == 2 * 7  # the small Llama: 2 layers x 7 projections
    starved = [name for name, ok in probe.lora_b.items() if not ok]
    assert not starved, f"{len(starved)} lora_B weights got no gradient, e.g. {starved[:3]}"
    assert probe.lora_b_dtypes == {"torch.float32"}  # float32 master weights, not trl's bf16 cast


def test_qlora_loss_falls_and_the_artifact_describes_the_run(
    qlora_run: tuple[AdapterArtifact, GradientProbe, Path], qa_dataset: DatasetArtifact
) -> None:
    adapter, _, out = qlora_run
    m = adapter.train_metrics
    assert m.global_step == 6
    assert m.final_loss < 0.7 * m.first_loss, m
    assert m.tokens_seen > 0 and m.tokens_per_second > 0
    assert adapter.architecture == "llama"
    assert adapter.quantization is not None and adapter.quantization.quant_type == "nf4"
    assert adapter.lora.r == 16 and adapter.lora.dropout == 0.0
    assert set(adapter.lora.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    # The manifest round-trips from disk, and points at the files.
    assert AdapterArtifact.read(out) == adapter
    adapter_dir = Path(adapter.adapter_dir)
    assert (adapter_dir / "adapter_config.json").is_file()
    assert (adapter_dir / "adapter_model.safetensors").is_file()
    assert not list(adapter_dir.glob("*.bin"))
    checkpoints = sorted(p.name for p in Path(adapter.checkpoint_dir or "").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-3", "checkpoint-6"]


def test_the_chat_template_travels_with_the_adapter(
    qlora_run: tuple[AdapterArtifact, GradientProbe, Path], qa_dataset: DatasetArtifact
) -> None:
    adapter, _, _ = qlora_run
    assert qa_dataset.chat_template
    assert adapter.chat_template == qa_dataset.chat_template
    saved = json.loads((Path(adapter.adapter_dir) / "tokenizer_config.json").read_text())
    assert saved["chat_template"] == qa_dataset.chat_template


def test_metrics_jsonl_logs_every_step(qlora_run: tuple[AdapterArtifact, GradientProbe, Path]) -> None:
    _, _, out = qlora_run
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[0]["max_steps"] == 6 and not events[0]["resumed"]
    logs = [e for e in events if e["event"] == "log" and "loss" in e]
    assert [e["step"] for e in logs] == [1, 2, 3, 4, 5, 6]
    assert all(e["tokens_per_second"] > 0 for e in logs)
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [3, 6]
    assert events[-1]["event"] == "end" and events[-1]["step"] == 6


def test_a_finished_run_is_refused_unless_resume_or_overwrite(
    qlora_run: tuple[AdapterArtifact, GradientProbe, Path], qa_dataset: DatasetArtifact
) -> None:
    adapter, _, out = qlora_run
    same = TrainingConfig(output_dir=str(out), max_steps=6, save_steps=3, **FAST)
    with pytest.raises(
        TrainingError, match=r"holds a finished run .*resume=True returns it, overwrite=True starts over"
    ):
        QLoRATrainer(QLoRAConfig(), same, progress_bar=False).train(qa_dataset)
    # resume=True on a finished run with the same settings returns it, without training.
    again = QLoRATrainer(QLoRAConfig(), same.replace(resume=True), progress_bar=False).train(qa_dataset)
    assert again == adapter
    # How it runs is not what it learns: those settings may change on resume.
    how = same.replace(resume=True, gradient_checkpointing=False, save_steps=5, logging_steps=2)
    assert QLoRATrainer(QLoRAConfig(), how, progress_bar=False).train(qa_dataset) == adapter
    # ... and with other settings it says what changed.
    with pytest.raises(TrainingError, match=r"training\.max_steps: 6 -> 7"):
        QLoRATrainer(QLoRAConfig(), same.replace(resume=True, max_steps=7), progress_bar=False).train(
            qa_dataset
        )


def test_overwrite_deletes_the_old_run_only_once_the_new_one_can_start(
    qlora_run: tuple[AdapterArtifact, GradientProbe, Path], qa_dataset: DatasetArtifact
) -> None:
    adapter, _, out = qlora_run
    bad = TrainingConfig(output_dir=str(out), max_steps=6, overwrite=True, **{**FAST, "max_length": 16384})
    with pytest.raises(TrainingError, match="longer than the model's context"):
        QLoRATrainer(QLoRAConfig(), bad, progress_bar=False).train(qa_dataset)
    assert AdapterArtifact.read(out) == adapter  # nothing lost
    assert (Path(adapter.adapter_dir) / "adapter_model.safetensors").is_file()


def test_plain_lora_trains_on_an_unquantized_base(qa_dataset: DatasetArtifact, tmp_path: Path) -> None:
    training = TrainingConfig(output_dir=str(tmp_path / "run"), max_steps=5, save_steps=100, **FAST)
    adapter = QLoRATrainer(QLoRAConfig(quantize=False), training, progress_bar=False).train(qa_dataset)
    m = adapter.train_metrics
    assert m.global_step == 5
    assert m.final_loss < 0.7 * m.first_loss, m
    assert adapter.quantization is None
    assert (Path(adapter.adapter_dir) / "adapter_model.safetensors").is_file()
