"""The fused LoRA path on a CUDA GPU (by hand on the GPU machine; skipped without CUDA).

One decoder layer of Llama-2-7B's and of Mistral-7B's shape, loaded 4-bit nf4 (double quant, bf16
compute and storage, as the defaults train), with LoRA r=16 on all seven projections and a random
nonzero B. For every projection the fused path's output and its gradients (input, lora_A, lora_B) are
compared with a float32 reference computed from the same dequantized weight and the same dropout mask:
relative L2 error at most ``RTOL`` (bfloat16 has 8 bits of mantissa; both paths round the output
once per matmul). Without dropout, peft's own path is held to the same reference, and the fused path
must be no further from it than peft's is (x 1.25, plus a small floor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

RTOL = 1e-2
TOKENS = 2048
SHAPES = {
    "llama": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "kv": 32},
    "mistral": {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "kv": 8},
}


def _one_layer(path: Path, shape: dict[str, Any]) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        shape["model_type"], vocab_size=1024, hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"], num_hidden_layers=1, num_attention_heads=32,
        num_key_value_heads=shape["kv"],
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(path)


def _lora_model(path: Path, dropout: float) -> Any:
    import torch

    from bedrock_ft.training import QLoRAConfig, TrainingConfig
    from bedrock_ft.training._model import build_model, resolve_precision

    qlora = QLoRAConfig(r=16, alpha=32, dropout=dropout, target_modules="all-linear")
    training = TrainingConfig(base_model=str(path), fused_lora=True, gradient_checkpointing=False)
    precision = resolve_precision("auto", "cuda")
    model = build_model(str(path), qlora, training, device="cuda", precision=precision, arch=None)
    torch.manual_seed(1)
    for module in model.modules():
        if getattr(module, "bedrock_ft_fused", False):
            b = module.lora_B["default"].weight
            with torch.no_grad():
                b.copy_(torch.randn_like(b) / 4)
    model.train()
    return model


def _err(got: Any, want: Any) -> float:
    return float((got.float() - want).norm() / want.norm())


def _reference(module: Any, x: Any, g: Any, mask: Any) -> tuple[Any, ...]:
    """float32 autograd through the same dequantized weight and the same mask."""
    import torch

    from bedrock_ft.training._weights import base_weight

    adapter = "default"
    w = base_weight(module.base_layer, torch.float32)
    xr = x.detach().float().requires_grad_(True)
    a = module.lora_A[adapter].weight.detach().float().requires_grad_(True)
    b = module.lora_B[adapter].weight.detach().float().requires_grad_(True)
    xd = xr * mask.float() if mask is not None else xr
    out = xr @ w.t() + (xd @ a.t() @ b.t()) * module.scaling[adapter]
    out.backward(g.float())
    return out.detach(), xr.grad, a.grad, b.grad


def _fused_run(module: Any, x: Any, g: Any, p: float, seed: int) -> tuple[Any, ...]:
    import torch

    from bedrock_ft.training._fused import fused_lora_linear

    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
    a.grad = b.grad = None
    xi = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = fused_lora_linear(xi, module.base_layer, a, b, scaling=module.scaling["default"], p=p)
    out.backward(g)
    return out.detach(), xi.grad, a.grad.clone(), b.grad.clone()


def _peft_run(module: Any, x: Any, g: Any) -> tuple[Any, ...]:
    import torch

    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
    a.grad = b.grad = None
    xi = x.clone().requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = type(module).forward(module, xi)
    out.backward(g)
    return out.detach(), xi.grad, a.grad.clone(), b.grad.clone()


@pytest.mark.parametrize("dropout", [0.0, 0.05])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_fused_layers_match_the_reference(tmp_path: Path, shape: str, dropout: float) -> None:
    import torch

    from bedrock_ft.training._fused import dropout_mask

    _one_layer(tmp_path / shape, SHAPES[shape])
    model = _lora_model(tmp_path / shape, dropout)
    fused = [(n, m) for n, m in model.named_modules() if getattr(m, "bedrock_ft_fused", False)]
    assert len(fused) == 7, [n for n, _ in fused]
    gen = torch.Generator(device="cuda").manual_seed(2)
    for name, module in fused:
        n_in, n_out = module.in_features, module.out_features
        x = torch.randn(2, TOKENS // 2, n_in, device="cuda", generator=gen, dtype=torch.bfloat16)
        g = torch.randn(2, TOKENS // 2, n_out, device="cuda", generator=gen, dtype=torch.bfloat16) / 32
        mask = None
        if dropout:  # the mask the fused path draws: its seed comes from torch's global generator
            torch.manual_seed(3)
            seed = int(torch.randint(0, 2**62, (1,)).item())
            mask = dropout_mask(x.reshape(-1, n_in), dropout, seed).view_as(x)
            kept = float((mask > 0).float().mean())
            assert abs(kept - (1 - dropout)) < 0.01, (name, kept)
        ref = _reference(module, x, g, mask)
        got = _fused_run(module, x, g, dropout, seed=3)
        errors = {what: _err(a, r) for what, a, r in zip(("out", "dx", "dA", "dB"), got, ref, strict=True)}
        assert max(errors.values()) < RTOL, (shape, name, dropout, errors)
        if not dropout:
            theirs = _peft_run(module, x, g)
            peft = {w: _err(a, r) for w, a, r in zip(("out", "dx", "dA", "dB"), theirs, ref, strict=True)}
            for what, err in errors.items():
                assert err <= 1.25 * peft[what] + 1e-3, (shape, name, what, errors, peft)
        print(shape, name, f"dropout={dropout}", {k: f"{v:.1e}" for k, v in errors.items()})


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_grouped_layers_match_the_reference(tmp_path: Path, shape: str) -> None:
    """q/k/v and gate/up through the grouped path (one node per group, no dropout): each member's
    output, the summed input gradient and each member's lora_A/lora_B gradients against float32
    references from the same dequantized weights, relative L2 error < RTOL."""
    import torch

    from bedrock_ft.training._fused_group import fused_lora_group

    _one_layer(tmp_path / shape, SHAPES[shape])
    model = _lora_model(tmp_path / shape, 0.0)
    groups = {id(m.bedrock_ft_group[0]): m.bedrock_ft_group[0] for m in model.modules()
              if hasattr(m, "bedrock_ft_group")}  # fmt: skip
    assert len(groups) == 2
    gen = torch.Generator(device="cuda").manual_seed(5)
    for group in groups.values():
        members = [ref() for ref in group.members]
        n_in = members[0].in_features
        x = torch.randn(2, TOKENS // 2, n_in, device="cuda", generator=gen, dtype=torch.bfloat16)
        gs = [torch.randn(2, TOKENS // 2, m.out_features, device="cuda", generator=gen,
                          dtype=torch.bfloat16) / 32 for m in members]  # fmt: skip
        refs = [_reference(m, x, g, None) for m, g in zip(members, gs, strict=True)]
        for m in members:
            m.lora_A["default"].weight.grad = m.lora_B["default"].weight.grad = None
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outs = fused_lora_group(xi, members)
        torch.autograd.backward(list(outs), gs)
        errors = {"dx": _err(xi.grad, sum(r[1] for r in refs))}
        for name, m, out, ref in zip(group.names, members, outs, refs, strict=True):
            errors[f"{name} out"] = _err(out.detach(), ref[0])
            errors[f"{name} dA"] = _err(m.lora_A["default"].weight.grad, ref[2])
            errors[f"{name} dB"] = _err(m.lora_B["default"].weight.grad, ref[3])
        assert max(errors.values()) < RTOL, (shape, group.names, errors)
        print(shape, group.names, {k: f"{v:.1e}" for k, v in errors.items()})


def test_start_up_check_passes_and_reports(tmp_path: Path) -> None:
    """fused_lora_check=True runs the per-layer comparison with peft's path on the real 4-bit layers."""
    from bedrock_ft.training import QLoRAConfig, TrainingConfig
    from bedrock_ft.training._model import build_model, resolve_precision

    _one_layer(tmp_path / "m", SHAPES["mistral"])
    lines: list[str] = []
    training = TrainingConfig(base_model=str(tmp_path / "m"), fused_lora_check=True)
    build_model(str(tmp_path / "m"), QLoRAConfig(), training, device="cuda",
                precision=resolve_precision("auto", "cuda"), arch=None, say=lines.append)  # fmt: skip
    assert lines == ["fused LoRA on 7 layers (2 groups sharing an input)"]


@pytest.mark.parametrize("layout", ["token-major", "head-major"])
@pytest.mark.parametrize("kernel", ["flash", "cudnn"])
def test_varlen_attention_matches_sdpa_per_record(
    kernel: str, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three packed records of different lengths through ``bedrock_ft_varlen`` (GQA, 32 query heads on
    8 key/value heads, as Mistral-7B), with each of its kernels: each record's output and the gradients
    of q, k and v match sdpa run on that record alone, causal, relative L2 error < RTOL. q/k/v come
    token-major ([1, T, H, D] in memory, as the projections make them) or head-major ([1, H, T, D]
    contiguous, which cuDNN's ragged offsets misread unless made token-major first)."""
    import torch
    import torch.nn.functional as F

    from bedrock_ft.training import _attention
    from bedrock_ft.training._attention import varlen_attention_forward

    if kernel == "cudnn" and _attention.cudnn_blocker(0, 128) is not None:
        pytest.skip(f"cuDNN varlen: {_attention.cudnn_blocker(0, 128)}")
    monkeypatch.setattr(_attention, "kernel_preference", kernel)

    lengths, heads, kv_heads, dim = [300, 1000, 748], 32, 8, 128
    total = sum(lengths)
    gen = torch.Generator(device="cuda").manual_seed(0)

    def rand(h: int) -> Any:
        shape = (1, h, total, dim) if layout == "head-major" else (1, total, h, dim)
        t = torch.randn(*shape, device="cuda", generator=gen, dtype=torch.bfloat16)
        return (t if layout == "head-major" else t.transpose(1, 2)).requires_grad_(True)

    q, k, v = rand(heads), rand(kv_heads), rand(kv_heads)
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None].cuda()
    out, _ = varlen_attention_forward(None, q, k, v, None, scaling=dim**-0.5, position_ids=position_ids)
    assert out.shape == (1, total, heads, dim)
    g = torch.randn(out.shape, device="cuda", generator=gen, dtype=torch.bfloat16)
    out.backward(g)
    start = 0
    for n in lengths:
        sl = slice(start, start + n)
        qr, kr, vr = (t.detach()[:, :, sl].float().requires_grad_(True) for t in (q, k, v))
        ref = F.scaled_dot_product_attention(qr, kr, vr, is_causal=True, enable_gqa=True).transpose(1, 2)
        ref.backward(g[:, sl].float())
        errors = {"out": _err(out[:, sl].detach(), ref.detach())}
        for what, got, want in (("dq", q.grad, qr.grad), ("dk", k.grad, kr.grad), ("dv", v.grad, vr.grad)):
            errors[what] = _err(got[:, :, sl], want)
        print(kernel, layout, n, {k: f"{v:.1e}" for k, v in errors.items()})
        assert max(errors.values()) < RTOL, (kernel, layout, n, errors)
        start += n


@pytest.mark.parametrize(
    ("quant_type", "double_quant", "dtype"),
    [("nf4", True, "bfloat16"), ("nf4", False, "float16"), ("fp4", True, "float32")],
)
def test_dequantization_calls_the_kernels_directly(quant_type: str, double_quant: bool, dtype: str) -> None:
    """On CUDA the 4-bit weight is dequantized by bitsandbytes' kernels called directly (not through
    its torch ops), and the result equals bitsandbytes' own dequantize_4bit, bit for bit."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf
    import torch

    from bedrock_ft.training._weights import base_weight

    compute = getattr(torch, dtype)
    torch.manual_seed(0)
    settings = {
        "compress_statistics": double_quant,
        "quant_type": quant_type,
        "quant_storage": torch.bfloat16,
    }
    layer = bnb.nn.Linear4bit(4096, 1024, bias=False, compute_dtype=compute, **settings)
    weight = (torch.randn(1024, 4096) / 64).to(compute)  # the weight's dtype is what dequantization returns
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, **settings)
    layer = layer.cuda()
    state = layer.weight.quant_state
    assert state.nested is double_quant and state.dtype == compute
    want = bnbf.dequantize_4bit(layer.weight.data, state)
    assert torch.equal(base_weight(layer, want.dtype), want)
    assert layer.bedrock_ft_dequantize[1].__name__ == "raw"
    for _ in range(2):  # the prepared path, again
        assert torch.equal(base_weight(layer, want.dtype), want)
