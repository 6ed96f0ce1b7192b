"""Bases and adapters beyond the embedded model's layout: float32 storage, odd blocks, a trained head."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bedrock_ft.errors import MergeError
from bedrock_ft.merging import AdapterMerger, MergeConfig

from .conftest import make_adapter


def _tiny(out: Path, embedded_dir: Path, *, dtype: str, tied: bool) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=tied,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(getattr(torch, dtype)).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedded_dir / name, out / name)
    return out


def test_float32_base_odd_blocks_same_bytes_both_modes(
    embedded_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A float32-stored base exported to bfloat16, merged in blocks that leave a 1-row remainder: both
    modes round W + delta once, from the stored values, in the same blocks."""
    from bedrock_ft.merging import _streaming

    monkeypatch.setattr(_streaming, "CHUNK_BYTES", 9 * 64 * 4)  # 9 rows of a 64-wide float32 weight
    base = _tiny(tmp_path / "base", embedded_dir, dtype="float32", tied=True)
    adapter = make_adapter(base, tmp_path / "adapter", r=4)
    merged = {
        mode: AdapterMerger(MergeConfig(output_dir=str(tmp_path / mode), mode=mode)).merge(adapter)
        for mode in ("memory", "streaming")
    }
    assert [(f.path, f.sha256) for f in merged["memory"].files] == [
        (f.path, f.sha256) for f in merged["streaming"].files
    ]
    assert merged["memory"].dtype == "bfloat16"
    assert merged["memory"].merge.verification.weights.max_rel <= 2.0**-7


def test_trained_head_on_a_tied_base_is_written_and_untied(embedded_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = _tiny(tmp_path / "base", embedded_dir, dtype="bfloat16", tied=True)
    adapter = make_adapter(base, tmp_path / "adapter", r=4, modules_to_save=["lm_head"])
    with torch.no_grad():  # make the saved head differ from the embedding, as training would
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(adapter))
        for name, p in peft_model.named_parameters():
            if "modules_to_save" in name:
                p.add_(0.05)
        peft_model.save_pretrained(str(adapter))
    # The head is tied (not stored) in the base: the streaming merge has no tensor to put it in.
    with pytest.raises(
        MergeError,
        match=r"can't apply .*lm_head\.weight \(no base tensor lm_head\.weight\); use mode='memory'",
    ):
        AdapterMerger(MergeConfig(output_dir=str(tmp_path / "s"), mode="streaming")).merge(adapter)
    model = AdapterMerger(MergeConfig(output_dir=str(tmp_path / "m"))).merge(adapter)
    assert model.merge.mode == "memory" and model.merge.untied == ["lm_head.weight"]
    config = json.loads(Path(model.model_dir, "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    index = json.loads(Path(model.model_dir, "model.safetensors.index.json").read_text())
    assert "lm_head.weight" in index["weight_map"]
    # The export behaves like base + adapter (its head included), not like the base's tied head.
    reloaded = AutoModelForCausalLM.from_pretrained(model.model_dir, dtype=torch.float32)
    ids = torch.tensor([[1, 20, 300, 4000]])
    with torch.no_grad():
        want = peft_model(ids).logits
        got = reloaded(ids).logits
    assert float((got - want).abs().max()) < 0.05 * float(want.abs().max())
