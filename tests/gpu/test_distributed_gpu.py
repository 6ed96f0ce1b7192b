"""backend='accelerate' on CUDA GPUs: FSDP-QLoRA on every visible GPU (world size 1 still runs the FSDP
path: sharding, RAM-efficient loading, the gathered adapter), and DDP where there are two or more."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .test_train_gpu import _small_model

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    from bedrock_ft.data import build_synthetic_dataset

    root = tmp_path_factory.mktemp("small")
    _small_model(root / "model")
    model = root / "model"
    data = build_synthetic_dataset(root / "data", n=600, tokenizer=str(model), chat_template="chatml")
    return root / "model", data


def _train(small: tuple[Path, Any], out: Path, **settings: Any) -> Any:
    import torch

    from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig

    model, data = small
    training = TrainingConfig(
        base_model=str(model), output_dir=str(out), max_steps=20, max_length=512, per_device_batch_size=4,
        learning_rate=2e-3, warmup_ratio=0.0, logging_steps=5, save_steps=10, backend="accelerate",
        num_processes=torch.cuda.device_count(), **settings,
    )  # fmt: skip
    said: list[str] = []
    return QLoRATrainer(QLoRAConfig(), training, progress=said.append, progress_bar=False).train(data), said


def _loads_and_merges(adapter: Any, tmp: Path) -> None:
    from safetensors import safe_open

    from bedrock_ft import AdapterMerger, MergeConfig

    with safe_open(str(Path(adapter.adapter_dir) / "adapter_model.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    assert any(".lora_A." in k for k in shapes) and all(0 not in s for s in shapes.values()), shapes

    merged = AdapterMerger(MergeConfig(output_dir=str(tmp / "merged"))).merge(adapter)
    logits = merged.merge.verification.logits
    assert logits.max_rel <= logits.tolerance


def test_fsdp_qlora_on_the_visible_gpus(small: tuple[Path, Any], tmp_path: Path) -> None:
    import torch

    adapter, said = _train(small, tmp_path / "run", strategy="fsdp")
    m = adapter.train_metrics
    assert (m.world_size, m.strategy, m.global_step) == (torch.cuda.device_count(), "fsdp", 20)
    assert m.final_loss < 0.7 * m.first_loss, m
    bf16 = torch.cuda.is_bf16_supported()
    # the launcher set the 4-bit storage dtype to the compute dtype, and said so
    assert adapter.quantization.storage_dtype == ("bfloat16" if bf16 else "float16")
    assert any("storage_dtype set to" in line for line in said)
    config = (tmp_path / "run" / "launch" / "accelerate.yaml").read_text()
    assert "LlamaDecoderLayer" in config and "SHARDED_STATE_DICT" in config
    # the checkpoint is sharded (one file set per rank), the saved adapter is whole
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints and any(p.name.startswith("pytorch_model_fsdp") for p in checkpoints[-1].iterdir())
    adapter_config = json.loads((Path(adapter.adapter_dir) / "adapter_config.json").read_text())
    assert adapter_config["r"] == 16
    _loads_and_merges(adapter, tmp_path)


def test_ddp_on_two_or_more_gpus(small: tuple[Path, Any], tmp_path: Path) -> None:
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("DDP across GPUs needs two or more")
    adapter, _ = _train(small, tmp_path / "run", strategy="ddp")
    m = adapter.train_metrics
    assert (m.world_size, m.strategy) == (torch.cuda.device_count(), "ddp")
    assert m.final_loss < 0.7 * m.first_loss, m
    _loads_and_merges(adapter, tmp_path)
