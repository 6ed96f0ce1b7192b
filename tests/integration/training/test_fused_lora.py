"""The fused LoRA path's arithmetic on CPU, and its refusals.

Training on CPU keeps peft's layers (the fused path is CUDA-only and says so); these tests drive the
fused autograd function directly on a real 4-bit (bitsandbytes nf4, double quant) LoRA model on CPU in
float32, where it must agree with peft's own path to float32 rounding. The GPU comparison in bf16, on
Llama- and Mistral-shaped layers, is tests/gpu/test_fused_lora_gpu.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.errors import TrainingError
from bedrock_ft.training import QLoRAConfig, QLoRATrainer, TrainingConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lora_4bit(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(path)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, device_map={"": "cpu"},
                                                 quantization_config=quant)  # fmt: skip
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))


def _fusable(model: Any) -> list[str]:
    from bedrock_ft.training._fused import _layer_blocker

    return [name for name, module in model.named_modules() if _layer_blocker(module) is None]


def test_fused_layers_match_peft_on_4bit_layers(lora_4bit: Any) -> None:
    from bedrock_ft.training._fused import check_fused

    names = _fusable(lora_4bit)
    assert len(names) == 14  # seven projections in each of the two layers
    check_fused(lora_4bit, names, tol=1e-5)  # output, input, lora_A and lora_B gradients


def test_dropout_mask_is_drawn_once_and_replayed_in_the_backward(lora_4bit: Any) -> None:
    import torch

    from bedrock_ft.training._fused import base_weight, dropout_mask, fused_lora_linear

    module = dict(lora_4bit.named_modules())[_fusable(lora_4bit)[0]]
    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
    scaling = module.scaling["default"]
    with torch.no_grad():
        b.normal_()
    try:
        x = torch.randn(3, 40, 128, requires_grad=True)
        torch.manual_seed(7)
        out = fused_lora_linear(x, module.base_layer, a, b, scaling=scaling, p=0.3)
        torch.manual_seed(7)  # the fused path's seed comes from torch's generator: the same one again
        mask = dropout_mask(x.detach().reshape(-1, 128), 0.3, int(torch.randint(0, 2**62, (1,)).item()))
        assert abs(float((mask > 0).float().mean()) - 0.7) < 0.03
        assert torch.allclose(mask[mask > 0], torch.tensor(1 / 0.7))
        x2, a2, b2 = (t.detach().clone().requires_grad_(True) for t in (x, a, b))
        w = base_weight(module.base_layer, torch.float32)
        ref = x2 @ w.t() + ((x2 * mask.view_as(x2)) @ a2.t() @ b2.t()) * scaling
        g = torch.randn_like(ref)
        out.backward(g)
        ref.backward(g)
        for got, want in ((out, ref), (x.grad, x2.grad), (a.grad, a2.grad), (b.grad, b2.grad)):
            assert got is not None and want is not None
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # a different draw drops different inputs: the mask really is random, not fixed
        assert not torch.equal(mask, dropout_mask(mask, 0.3, 12345))
    finally:
        with torch.no_grad():
            b.zero_()
        a.grad = b.grad = None


def test_a_failing_check_names_the_layer(lora_4bit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bedrock_ft.training import _fused

    real = _fused.base_weight

    def off_by_a_bit(base: Any, dtype: Any) -> Any:  # a kernel bug in one layer's shape: down_proj's
        w = real(base, dtype)
        return w * 1.1 if w.shape == (128, 384) else w

    monkeypatch.setattr(_fused, "base_weight", off_by_a_bit)
    with pytest.raises(TrainingError) as err:
        _fused.check_fused(lora_4bit, _fusable(lora_4bit))
    message = str(err.value)
    assert message.startswith("fused LoRA check failed at base_model.model.model.layers.0.mlp.down_proj: ")
    assert "its output differs from peft's by" in message and "fused_lora=False" in message


def test_fused_lora_forced_on_where_it_cannot_apply(
    train_model_dir: Path, qa_dataset: Any, tmp_path: Path
) -> None:
    """On CPU: the reason, before the model loads."""
    training = TrainingConfig(base_model=str(train_model_dir), output_dir=str(tmp_path / "run"), max_steps=1,
                              fused_lora=True, device="cpu")  # fmt: skip
    why = "fused_lora=True, but the fused LoRA path can.t apply: it runs on CUDA GPUs and this run trains on"
    with pytest.raises(TrainingError, match=why):
        QLoRATrainer(QLoRAConfig(), training).train(qa_dataset)
    assert not (tmp_path / "run" / "checkpoints").exists()
