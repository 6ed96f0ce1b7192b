"""Adapters to merge: random (non-zero) LoRA weights on the embedded model, made with peft directly.

Random A and B make the adapter's effect large, so a merge that drops or misscales it can't pass.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def make_adapter(
    base_dir: Path, out: Path, *, r: int = 8, alpha: float = 16.0, seed: int = 0, **lora: object
) -> Path:
    """A saved peft adapter for ``base_dir`` with random lora_A and lora_B, plus the base's tokenizer
    carrying the built-in ChatML template (which has {% generation %} markers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from bedrock_ft.chat_templates import get_chat_template

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules="all-linear",
        init_lora_weights=False,
        task_type="CAUSAL_LM",
        **lora,
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)  # large enough to move the logits a lot, small enough to keep them finite
    peft_model.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        shutil.copy(base_dir / name, out / name)
    tok = json.loads((out / "tokenizer_config.json").read_text())
    tok["chat_template"] = get_chat_template("chatml").source
    (out / "tokenizer_config.json").write_text(json.dumps(tok))
    return out


@pytest.fixture(scope="session")
def adapter_dir(embedded_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_adapter(embedded_dir, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="session")
def merges(adapter_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The same adapter merged both ways, with shards small enough that the model spans several."""
    from bedrock_ft.merging import AdapterMerger, MergeConfig

    root = tmp_path_factory.mktemp("merges")
    return {
        mode: AdapterMerger(
            MergeConfig(output_dir=str(root / mode), mode=mode, max_shard_size="100MB")
        ).merge(adapter_dir)
        for mode in ("memory", "streaming")
    }
