"""QLoRATrainer on a CUDA GPU (H100/H200 by hand; skipped without CUDA, excluded from CI).

The GPU machine has no network, so the model is a small random-init Llama with a BPE tokenizer trained
here on the synthetic QA text; the dataset is built with DatasetBuilder as users build theirs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def _small_model(path: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from bedrock_ft.data import synthetic_qa

    texts = [f"{r['question']} {r['answer']}" for r in synthetic_qa(900, seed=1)]
    specials = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2048, special_tokens=specials))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.save_pretrained(path)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=512, intermediate_size=1536, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(path)


class GradientProbe(TrainerCallback):  # type: ignore[misc]
    def __init__(self) -> None:
        self.lora_b: dict[str, bool] = {}
        self.checkpointed: list[bool] = []
        self.module_types: set[str] = set()
        self.liger_norms = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        modules = list(kwargs["model"].modules())
        self.module_types = {type(m).__name__ for m in modules}
        # liger patches RMSNorm instances in place (forward, and a casting_mode attribute)
        self.liger_norms = sum(1 for m in modules if hasattr(m, "casting_mode"))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from transformers.modeling_layers import GradientCheckpointingLayer

        layers = [m for m in kwargs["model"].modules() if isinstance(m, GradientCheckpointingLayer)]
        self.checkpointed = [layer.gradient_checkpointing for layer in layers]

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.lora_b:
            for name, p in kwargs["model"].named_parameters():
                if "lora_B" in name:
                    self.lora_b[name] = p.grad is not None and bool(p.grad.abs().sum() > 0)


def test_qlora_on_cuda(tmp_path: Path) -> None:
    import importlib.util

    import torch

    from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig
    from bedrock_ft.data import build_synthetic_dataset

    model_dir = tmp_path / "small-llama"
    _small_model(model_dir)
    data = build_synthetic_dataset(tmp_path / "data", n=600, tokenizer=str(model_dir), chat_template="chatml")
    probe = GradientProbe()
    training = TrainingConfig(
        base_model=str(model_dir), output_dir=str(tmp_path / "run"), max_steps=30, max_length=512,
        per_device_batch_size=4, learning_rate=2e-3, warmup_ratio=0.0, logging_steps=5, save_steps=15,
    )  # fmt: skip
    said: list[str] = []
    trainer = QLoRATrainer(
        QLoRAConfig(), training, progress=said.append, progress_bar=False, callbacks=[probe]
    )
    started = time.perf_counter()
    adapter = trainer.train(data)
    elapsed = time.perf_counter() - started

    # steps timed with CUDA events, read after the fact: every step, within the run's time
    mon = trainer.monitor
    assert len(mon.step_seconds) == 30 and all(s > 0 for s in mon.step_seconds), mon.step_seconds
    assert sum(mon.step_seconds) < elapsed and all(t > 0 for t in mon.step_tokens)
    # auto: the last layers keep their activations (a small vocabulary: its logits pay for few)
    assert any("keep" in line and "activations" in line for line in said), said
    assert probe.checkpointed and probe.checkpointed[-1] is False and probe.checkpointed[0] is True

    m = adapter.train_metrics
    assert m.global_step == 30
    assert m.final_loss < 0.5 * m.first_loss, m
    assert m.peak_memory_gib > 0 and m.tokens_per_second > 0
    assert probe.lora_b and all(probe.lora_b.values())
    assert adapter.quantization is not None
    expected = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    assert adapter.quantization.compute_dtype == expected
    if importlib.util.find_spec("liger_kernel") is not None:  # the fast path is on by default with CUDA
        assert probe.liger_norms >= 4 * 2 + 1, sorted(probe.module_types)
    assert "Linear4bit" in probe.module_types
    events = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("peak_memory_gib" in e for e in events if e["event"] == "log")
