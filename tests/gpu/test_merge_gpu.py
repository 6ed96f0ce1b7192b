"""AdapterMerger's memory mode on a CUDA GPU (by hand on the GPU machine; skipped without CUDA).

A small random-init Llama (the training GPU test's) with a random adapter: the merge on the GPU and the
streaming merge on the CPU must agree within one bfloat16 rounding, and the GPU logits check passes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_train_gpu import _small_model

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_memory_merge_on_gpu_matches_streaming(tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from bedrock_ft.merging import AdapterMerger, MergeConfig

    base = tmp_path / "base"
    _small_model(base)
    torch.manual_seed(1)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
        LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False),
    )
    adapter = tmp_path / "adapter"
    model.save_pretrained(str(adapter))
    gpu = AdapterMerger(MergeConfig(output_dir=str(tmp_path / "gpu"), mode="memory", device="cuda")).merge(
        adapter
    )
    cpu = AdapterMerger(MergeConfig(output_dir=str(tmp_path / "cpu"), mode="streaming")).merge(adapter)
    assert gpu.merge.verification.logits.device == "cuda"
    assert gpu.merge.verification.logits.max_rel <= gpu.merge.verification.logits.tolerance
    index = json.loads(Path(gpu.model_dir, "model.safetensors.index.json").read_text())["weight_map"]
    differ = 0
    for name, shard in index.items():
        with (
            safe_open(str(Path(gpu.model_dir, shard)), "pt") as a,
            safe_open(str(Path(cpu.model_dir, shard)), "pt") as b,
        ):
            x, y = a.get_tensor(name).float(), b.get_tensor(name).float()
        # cuBLAS and the CPU's BLAS may sum in another order: one bf16 step apart at most, plus a little
        # absolute slack where W + delta cancels to almost nothing (as the merge's own weight check allows)
        bound = 2.0**-7 * y.abs() + 2.0**-7 * float(y.abs().max()) * 1e-3
        assert bool(((x - y).abs() <= bound).all()), name
        differ += int(not torch.equal(x, y))
    print(f"tensors differing by one rounding between GPU and CPU merges: {differ} of {len(index)}")
