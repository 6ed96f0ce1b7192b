"""The fused LoRA path's arithmetic on CPU, and its refusals.

Training on CPU keeps peft's layers (the fused path is CUDA-only and says so); these tests drive the
fused autograd function directly on a real 4-bit (bitsandbytes nf4, double quant) LoRA model on CPU in
float32, where it must agree with peft's own path to float32 rounding. The GPU comparison in bf16, on
Llama- and Mistral-shaped layers, is tests/gpu/test_fused_lora_gpu.py.
"""

from __future__ import annotations

import copy
import itertools
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

    from bedrock_ft.training._fused import dropout_mask, fused_lora_linear
    from bedrock_ft.training._weights import base_weight

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


@pytest.fixture
def grouped(lora_4bit: Any) -> Any:
    """The fixture's LoRA layers on the fused path (as fuse_lora puts them on CUDA), q/k/v and gate/up
    grouped, with a random nonzero B; put back as they were afterwards."""
    import torch

    from bedrock_ft.training import _fused, _fused_group

    names = _fusable(lora_4bit)
    modules = dict(lora_4bit.named_modules())
    bs = [p for n, p in lora_4bit.named_parameters() if "lora_B" in n]
    with torch.no_grad():
        for b in bs:
            b.normal_(0, 0.1)
    for name in names:
        _fused._patch(modules[name], None)
    groups = _fused_group.group_layers(lora_4bit, names)
    try:
        yield lora_4bit, groups
    finally:
        for name in names:
            for attr in ("forward", "bedrock_ft_group", "bedrock_ft_fused", "bedrock_ft_layer"):
                modules[name].__dict__.pop(attr, None)
        with torch.no_grad():
            for b in bs:
                b.zero_()
        for p in lora_4bit.parameters():
            p.grad = None


def test_grouped_layers_match_peft_through_the_model(grouped: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """q/k/v and gate/up as groups, through a real Llama forward and backward in train mode: the loss and
    every LoRA gradient equal peft's, and each group is computed once a forward (by its first member
    called; the others take their outputs), with no member on the one-layer path."""
    import torch

    from bedrock_ft.training import _fused, _fused_group

    model, groups = grouped
    assert groups == 4  # q/k/v and gate/up in each of the two layers
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(3))
    model.train()

    def run() -> tuple[Any, dict[str, Any]]:
        for p in lora.values():
            p.grad = None
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in lora.items() if p.grad is not None}

    got_loss, got = run()
    counts = {"group": 0, "single": 0}
    real_group, real_single = _fused_group.fused_lora_group, _fused.fused_lora_linear

    def count_group(*a: Any, **k: Any) -> Any:
        counts["group"] += 1
        return real_group(*a, **k)

    def count_single(*a: Any, **k: Any) -> Any:
        counts["single"] += 1
        return real_single(*a, **k)

    monkeypatch.setattr(_fused_group, "fused_lora_group", count_group)
    monkeypatch.setattr(_fused, "fused_lora_linear", count_single)
    again_loss, _ = run()
    assert counts == {"group": 4, "single": 4}  # the groups once each; o_proj and down_proj on their own
    torch.testing.assert_close(again_loss, got_loss, rtol=0, atol=0)
    modules = dict(model.named_modules())
    forwards = {n: modules[n].__dict__.pop("forward") for n in _fusable(model)}
    try:  # peft's own layers, same weights
        want_loss, want = run()
    finally:
        for n, f in forwards.items():
            modules[n].forward = f
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-5, atol=1e-6)
    assert got.keys() == want.keys() and len(want) == 28
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_grouped_layers_follow_the_optimizer(grouped: Any) -> None:
    """The group keeps its stacked A matrices between steps (see cached_cast): after each step of a fused
    AdamW, which changes the weights in place without bumping their version counters, the grouped path
    must compute with the new weights, as peft's layers do."""
    import torch

    model, _ = grouped
    lora = [p for p in model.parameters() if p.requires_grad]
    ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(5))
    modules = dict(model.named_modules())
    opt = torch.optim.AdamW(lora, lr=0.05, fused=True)
    model.train()
    for step in range(3):
        opt.zero_grad(set_to_none=True)
        got = model(input_ids=ids, labels=ids).loss
        got.backward()
        forwards = {n: modules[n].__dict__.pop("forward") for n in _fusable(model)}
        try:
            with torch.no_grad():
                want = model(input_ids=ids, labels=ids).loss  # peft's layers, the same weights
        finally:
            for n, f in forwards.items():
                modules[n].forward = f
        torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-6, msg=f"step {step}")
        opt.step()


def test_cached_casts_follow_every_optimizer_step(lora_4bit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer computing in bfloat16 with float32 LoRA weights casts A and B once a step and keeps them on
    the layer; the forward and backward with that cache must equal the uncached path bitwise, step after
    step of a fused AdamW (no version bump: the optimizer-step hook is what expires the cache), and after
    an in-place change of B."""
    import torch

    from bedrock_ft.training._fused import fused_lora_linear

    module = dict(lora_4bit.named_modules())[_fusable(lora_4bit)[0]]
    monkeypatch.setattr(module.base_layer, "compute_dtype", torch.bfloat16)
    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
    scaling = module.scaling["default"]
    x = torch.randn(2, 8, 128, generator=torch.Generator().manual_seed(4))

    def run(owner: Any) -> list[Any]:
        a.grad = b.grad = None
        xi = x.clone().requires_grad_(True)
        out = fused_lora_linear(xi, module.base_layer, a, b, scaling=scaling, owner=owner)
        out.float().pow(2).sum().backward()
        assert xi.grad is not None and a.grad is not None and b.grad is not None
        return [out.detach(), xi.grad, a.grad.clone(), b.grad.clone()]

    opt = torch.optim.AdamW([a, b], lr=0.05, fused=True)
    saved = a.detach().clone()
    try:
        with torch.no_grad():
            b.normal_(0, 0.1)
        for step in range(4):
            if step == 3:
                with torch.no_grad():
                    b.mul_(2)  # an in-place change, outside any optimizer
            cached, plain = run(module), run(None)
            assert module.bedrock_ft_casts["B"][1].dtype == torch.bfloat16  # the cache served
            for got, want in zip(cached, plain, strict=True):
                assert torch.equal(got, want), step
            opt.step()
    finally:
        with torch.no_grad():
            a.copy_(saved)
            b.zero_()
        a.grad = b.grad = None
        module.__dict__.pop("bedrock_ft_casts", None)


def test_dequantization_skips_bitsandbytes_python_and_matches_it(lora_4bit: Any) -> None:
    """The 4-bit weight is dequantized through bitsandbytes' torch ops with its state read once, and the
    result equals bitsandbytes' own dequantize_4bit (double-quantized nf4 here)."""
    import bitsandbytes.functional as bnbf
    import torch

    from bedrock_ft.training._weights import base_weight

    module = dict(lora_4bit.named_modules())[_fusable(lora_4bit)[0]]
    base = module.base_layer
    base.__dict__.pop("bedrock_ft_dequantize", None)
    assert base.weight.quant_state.nested
    want = bnbf.dequantize_4bit(base.weight.data, base.weight.quant_state)
    assert torch.equal(base_weight(base, want.dtype), want)
    assert base.bedrock_ft_dequantize[1].__name__ == "direct"  # not bitsandbytes' function
    assert torch.equal(base_weight(base, want.dtype), want)  # the prepared path, again


def test_grouped_check_passes_and_names_the_group(grouped: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bedrock_ft.training import _fused, _fused_group

    model, _ = grouped
    _fused_group.check_groups(model, tol=1e-5)
    real = _fused.base_weight

    def off_by_a_bit(base: Any, dtype: Any) -> Any:  # a bug in one shape: k_proj's (and v_proj's)
        w = real(base, dtype)
        return w * 1.1 if w.shape == (64, 128) else w

    monkeypatch.setattr(_fused_group, "base_weight", off_by_a_bit)
    with pytest.raises(TrainingError) as err:
        _fused_group.check_groups(model, tol=1e-5)
    assert str(err.value).startswith(
        "fused LoRA check failed at base_model.model.model.layers.0.self_attn (its grouped projections): "
        "k_proj output differs from peft's by"
    )


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


def test_varlen_attention_plumbing_through_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """bedrock_ft_varlen registered with transformers, in a real Llama forward over a packed row of
    three records: the records' bounds come from position_ids, the layout goes in and out right, and
    a padded batch goes to sdpa. torch's varlen kernel is CUDA-only, so here it is swapped for sdpa run
    record by record (the kernel itself is checked in tests/gpu); the packed row's logits must equal
    those of the same weights with sdpa run on each record alone."""
    import torch
    import torch.nn.functional as F
    from transformers import LlamaConfig, LlamaForCausalLM

    from bedrock_ft.training import _attention

    calls: list[list[int]] = []

    def per_record(q: Any, k: Any, v: Any, cu: Any, *args: Any, **kw: Any) -> Any:
        bounds = cu.tolist()
        calls.append(bounds)
        assert args[1] == max(b - a for a, b in itertools.pairwise(bounds))  # the longest record
        outs = []
        for a, b in itertools.pairwise(bounds):
            qi, ki, vi = (t[a:b].transpose(0, 1)[None] for t in (q, k, v))
            o = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=kw["scale"], enable_gqa=True)
            outs.append(o[0].transpose(0, 1))
        return torch.cat(outs)

    monkeypatch.setattr(_attention, "_varlen_fn", lambda: per_record)
    _attention._params.cache_clear()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    sdpa = LlamaForCausalLM(config).eval()
    assert sdpa.config._attn_implementation == "sdpa"
    config = copy.deepcopy(config)
    config._attn_implementation = _attention.register_varlen()
    varlen = LlamaForCausalLM(config).eval()
    varlen.load_state_dict(sdpa.state_dict())
    ids = torch.randint(0, 128, (1, 30))
    position_ids = torch.cat([torch.arange(n) for n in (7, 15, 8)])[None]
    with torch.no_grad():  # the reference: each record through the sdpa model on its own
        want = torch.cat([sdpa(input_ids=ids[:, a:b]).logits for a, b in ((0, 7), (7, 22), (22, 30))], dim=1)
        got = varlen(input_ids=ids, position_ids=position_ids, use_cache=False).logits
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert calls == [[0, 7, 22, 30]] * 2  # both layers, the bounds computed from position_ids
    # a padded batch (an attention mask) is sdpa's: no call to the varlen kernel
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :3] = 0
    with torch.no_grad():
        varlen(input_ids=torch.randint(0, 128, (2, 10)), attention_mask=mask)
    assert len(calls) == 2


def test_varlen_attention_forced_where_it_cannot_apply() -> None:
    """attn_implementation='varlen' says why it can't run; auto picks it only where it can."""
    from bedrock_ft.errors import TrainingError
    from bedrock_ft.training import TrainingConfig
    from bedrock_ft.training._attention import VARLEN
    from bedrock_ft.training._model import resolve_attention

    mistral = {"model_type": "mistral", "sliding_window": None}
    forced = TrainingConfig(attn_implementation="varlen")
    with pytest.raises(TrainingError, match=r"attn_implementation='varlen' can't apply: it needs a CUDA GPU"):
        resolve_attention(forced, "cpu", mistral)
    with pytest.raises(TrainingError, match=r"model_type 'gpt2' is not one of llama, mistral, qwen2, qwen3"):
        resolve_attention(forced, "cuda", {"model_type": "gpt2"})
    windowed = {"model_type": "mistral", "sliding_window": 1024}
    with pytest.raises(TrainingError, match=r"sliding window \(1024\) is shorter than max_length \(2048\)"):
        resolve_attention(forced, "cuda", windowed)
    wrapped = TrainingConfig(attn_implementation="varlen", packing_strategy="wrapped", padding_free=False)
    with pytest.raises(TrainingError, match="padding-free batches"):
        resolve_attention(wrapped, "cuda", mistral)
    assert resolve_attention(forced, "cuda", mistral) == VARLEN
    assert resolve_attention(TrainingConfig(), "cuda", mistral) == VARLEN
    assert resolve_attention(TrainingConfig(), "cpu", mistral) == "sdpa"  # CPU unchanged


def test_varlen_kernel_choice_and_its_label(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loading line names varlen's kernel; without a Hopper GPU and cudnn-frontend it is flash, and
    asking for cuDNN there says why (a Hopper GPU without cudnn-frontend gets a hint). cuDNN's graphs
    are keyed by a bucketed max length."""
    from bedrock_ft.training import _attention
    from bedrock_ft.training._model import attention_label

    mistral = {"num_attention_heads": 32, "hidden_size": 4096}
    assert attention_label("flex_attention", mistral) == "flex_attention"
    assert attention_label(_attention.VARLEN, mistral) == "bedrock_ft_varlen (flash)"
    assert _attention.cudnn_blocker(0, 128) == "no CUDA GPU"
    monkeypatch.setattr(_attention, "kernel_preference", "cudnn")
    with pytest.raises(RuntimeError, match="cuDNN varlen attention can't run here: no CUDA GPU"):
        _attention.varlen_kernel(0, 128)
    monkeypatch.setattr(_attention, "kernel_preference", "fastest")
    with pytest.raises(ValueError, match="kernel_preference 'fastest': one of auto, cudnn, flash"):
        _attention.varlen_kernel(0, 128)
    assert [_attention._bucket(n) for n in (1, 100, 128, 129, 2048, 2049)] == [128, 128, 128, 256, 2048, 4096]
    # a Hopper GPU without cudnn-frontend: flash, and the loading line says what would be faster
    monkeypatch.setattr(_attention, "kernel_preference", "auto")
    monkeypatch.setattr(_attention, "cudnn_blocker", lambda *_: "cudnn-frontend isn't usable (ImportError)")
    assert attention_label(_attention.VARLEN, mistral) == (
        "bedrock_ft_varlen (flash; pip install nvidia-cudnn-frontend for cuDNN's, faster on this GPU)"
    )
    monkeypatch.setattr(_attention, "cudnn_blocker", lambda *_: None)
    assert attention_label(_attention.VARLEN, mistral) == "bedrock_ft_varlen (cuDNN)"


def test_cudnn_varlen_metadata_derived_once_per_bounds_tensor() -> None:
    """cudnn-frontend's per-call metadata from cu_seqlens is derived once per bounds tensor (every layer
    of a step shares it): the same tensor again is a hit, another tensor or one changed in place a miss."""
    import types

    import torch

    from bedrock_ft.training._attention import _derive_once_per_step

    calls: list[Any] = []

    def derive(cu_q: Any, cu_kv: Any, q_strides: Any, kv_strides: Any) -> Any:
        calls.append((cu_q.tolist(), tuple(q_strides)))
        return (cu_q * q_strides[0],)

    fake = types.SimpleNamespace(prepare_varlen_metadata=derive)
    _derive_once_per_step(fake)
    _derive_once_per_step(fake)  # wrapping twice is a no-op
    cu = torch.tensor([0, 5, 9], dtype=torch.int32)
    first = fake.prepare_varlen_metadata(cu, cu, (4, 8), (2,))
    assert fake.prepare_varlen_metadata(cu, cu, (4, 8), (2,)) is first
    assert len(calls) == 1
    fake.prepare_varlen_metadata(cu, cu, (3, 8), (2,))  # other strides: derived for them
    other = torch.tensor([0, 5, 9], dtype=torch.int32)
    fake.prepare_varlen_metadata(other, other, (4, 8), (2,))  # an equal but other tensor
    cu[1] = 6  # changed in place
    assert fake.prepare_varlen_metadata(cu, cu, (4, 8), (2,))[0].tolist() == [0, 24, 36]
    assert len(calls) == 4
