"""Attention over packed, padding-free batches through variable-length attention kernels.

A padding-free step is one long row of several records, each restarting its ``position_ids`` at 0.
flex_attention builds a block mask for it and skips the blocks between records; a variable-length
kernel takes the records' boundaries directly and runs each record's causal attention, with no mask
at all. Two such kernels are wired: cuDNN's fused attention for packed (THD) batches through NVIDIA's
cudnn-frontend (``torch.ops.cudnn.sdpa_fwd``/``sdpa_bwd``, graphs built once per shape and cached),
used on Hopper and later GPUs when cudnn-frontend is installed (``pip install nvidia-cudnn-frontend``);
and flash attention 2's varlen kernels inside torch (``torch.nn.attention.varlen``) everywhere else.
On an H200 cuDNN's kernels took half of flash's GPU time (benchmarks/train_profile.py); both match sdpa
record by record, forward and backward, in tests/gpu/test_fused_lora_gpu.py. cuDNN needs q/k/v
token-major in memory: given a head-major view, its query gradient came out wrong, so they are made
contiguous first (a no-op for the projections' outputs). ``kernel_preference`` below picks: "auto" (the
default), "cudnn" (required, or an error that says why) or "flash". (torch's own ragged cuDNN entry
point, ``aten._cudnn_attention_forward`` with cumulative lengths, rebuilds its cuDNN graph on every
call, which costs more CPU time than the kernel saves, so it is not used.) The function is
registered with transformers as the attention implementation ``bedrock_ft_varlen``.

It applies to the decoder families whose attention is plain causal softmax attention (Llama, Mistral,
Qwen2, Qwen3) without a sliding window shorter than ``max_length``; anything else (a padded batch,
attention dropout) goes to sdpa within the same function, and other models keep flex_attention.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from bedrock_ft.training._config import TrainingConfig

__all__ = ["VARLEN", "cudnn_blocker", "register_varlen", "varlen_blocker", "varlen_kernel"]

VARLEN = "bedrock_ft_varlen"
FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
KERNELS = ("auto", "cudnn", "flash")
# auto (the default): cuDNN on Hopper+ when cudnn-frontend is installed, else flash. cudnn: required.
# flash: flash attention 2 always. The benchmarks switch it here.
kernel_preference = "auto"


def varlen_blocker(model_config: dict[str, Any], training: TrainingConfig, device: str) -> str | None:
    """Why varlen attention can't run this training, or None when it can."""
    if device != "cuda":
        return "it needs a CUDA GPU"
    if not training.uses_padding_free:
        return "it serves padding-free batches (packing_strategy='bfd')"
    if _varlen_fn() is None:
        import torch

        return f"torch {torch.__version__} has no torch.nn.attention.varlen"
    family = model_config.get("model_type")
    if family not in FAMILIES:
        return f"model_type {family!r} is not one of {', '.join(sorted(FAMILIES))}"
    window = model_config.get("sliding_window")
    if model_config.get("use_sliding_window", window is not None) and window and window < training.max_length:
        return f"the model's sliding window ({window}) is shorter than max_length ({training.max_length})"
    return None


@functools.cache
def _varlen_fn() -> Any:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def varlen_kernel(device_index: int = 0, head_dim: int = 128) -> str:
    """The varlen kernel this run uses: with ``kernel_preference`` "auto" (the default), ``cudnn`` on
    Hopper and later (sm90+) where cudnn-frontend is installed and the head size suits it (a multiple of
    8, at most 128), else ``flash``; with "cudnn", cuDNN or an error that says why; with "flash", flash."""
    if kernel_preference not in KERNELS:
        raise ValueError(f"kernel_preference {kernel_preference!r}: one of {', '.join(KERNELS)}")
    if kernel_preference == "flash":
        return "flash"
    why = cudnn_blocker(device_index, head_dim)
    if why is None:
        return "cudnn"
    if kernel_preference == "cudnn":
        raise RuntimeError(f"cuDNN varlen attention can't run here: {why}")
    return "flash"


@functools.cache
def cudnn_blocker(device_index: int, head_dim: int) -> str | None:
    """Why cuDNN's varlen attention isn't used on this GPU, or None."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    if torch.cuda.get_device_capability(device_index) < (9, 0):
        return "it is used on sm90+ (Hopper and later) GPUs, where it beats flash attention 2"
    if head_dim % 8 or head_dim > 128:
        return f"head size {head_dim} (cuDNN takes multiples of 8 up to 128)"
    return _cudnn_import_error()


@functools.cache
def _cudnn_import_error() -> str | None:
    try:  # registers torch.ops.cudnn.sdpa_fwd / sdpa_bwd (and their autograd)
        from cudnn.sdpa.fwd import torch_op
    except Exception as exc:  # not installed, or no usable libcudnn: flash serves instead
        return f"cudnn-frontend isn't usable ({type(exc).__name__}: {exc}); pip install nvidia-cudnn-frontend"
    _derive_once_per_step(torch_op)
    return None


def _derive_once_per_step(torch_op: Any) -> None:
    """cudnn-frontend derives the varlen metadata (record lengths, ragged offsets) from cu_seqlens on
    every call: about ten small kernels, 96 calls a step for a 32-layer model. Every layer of a step has
    the same bounds tensor (see :func:`record_bounds`), so derive them once for it."""
    original = getattr(torch_op, "prepare_varlen_metadata", None)
    if original is None or getattr(original, "bedrock_ft_once", False):
        return
    cache: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def once(cu_q: Any, cu_kv: Any, q_strides: Any, kv_strides: Any) -> Any:
        key = (id(cu_q), id(cu_kv), tuple(q_strides), tuple(kv_strides))
        hit = cache.get(key)
        versions = (cu_q._version, cu_kv._version)
        if hit is not None and hit[0]() is cu_q and hit[1]() is cu_kv and hit[2] == versions:
            return hit[3]
        out = original(cu_q, cu_kv, q_strides, kv_strides)
        if len(cache) >= 16:
            cache.clear()
        cache[key] = (weakref.ref(cu_q), weakref.ref(cu_kv), versions, out)
        return out

    once.bedrock_ft_once = True  # type: ignore[attr-defined]
    torch_op.prepare_varlen_metadata = once


def _bucket(longest: int) -> int:
    """The max record length handed to cuDNN: the next power of two (at least 128). It is an upper bound
    (the lengths come from cu_seqlens), and part of the cached graph's key: bucketing keeps the number of
    graphs built small when the longest record changes from step to step."""
    return max(128, 1 << (longest - 1).bit_length())


@functools.cache
def register_varlen() -> str:
    """Register ``bedrock_ft_varlen`` with transformers (attention and mask functions); its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    def mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
        # No mask for the varlen path (the records' bounds come from position_ids); a padded batch
        # gets sdpa's mask, and the attention below hands it to sdpa.
        return None if attention_mask is None else sdpa_mask(*args, attention_mask=attention_mask, **kwargs)

    AttentionInterface.register(VARLEN, varlen_attention_forward)
    AttentionMaskInterface.register(VARLEN, mask)
    return VARLEN


_LAST: list[Any] = [None, None]  # a weak reference to the last position_ids, and its bounds


def record_bounds(position_ids: torch.Tensor | None, batch: int, length: int, device: Any) -> tuple[Any, int]:
    """cu_seqlens (int32) and the longest record, from position_ids (a record starts wherever the
    position doesn't follow the previous one). Computed once per forward: every layer gets the same
    tensor, and the checkpointed recomputation does too."""
    import torch

    ref, cached = _LAST
    if position_ids is not None and ref is not None and ref() is position_ids:
        return cached  # type: ignore[no-any-return]
    if position_ids is None:
        starts = torch.arange(0, batch * length, length, device=device)
    else:
        flat = position_ids.expand(batch, -1).reshape(-1)
        new = torch.ones_like(flat, dtype=torch.bool)
        new[1:] = flat[1:] != flat[:-1] + 1
        starts = torch.nonzero(new).flatten()
    total = torch.tensor([batch * length], device=device)
    cu = torch.cat([starts, total]).to(torch.int32)
    bounds = (cu, int((cu[1:] - cu[:-1]).max().item()))
    if position_ids is not None:
        _LAST[:] = [weakref.ref(position_ids), bounds]
    return bounds


def varlen_attention_forward(  # noqa: PLR0917
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: query [B, H, T, D], key/value [B, Hkv, T, D] in, the output
    [B, T, H, D] out."""
    if attention_mask is not None or dropout:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(  # type: ignore[no-any-return]
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    batch, heads, length, dim = query.shape
    kv_heads = key.shape[1]
    cu, longest = record_bounds(kwargs.get("position_ids"), batch, length, query.device)
    q = query.transpose(1, 2).reshape(batch * length, heads, dim)
    k = key.transpose(1, 2).reshape(batch * length, kv_heads, dim)
    v = value.transpose(1, 2).reshape(batch * length, kv_heads, dim)
    if varlen_kernel(query.device.index or 0, dim) == "cudnn":
        # cuDNN's ragged offsets must see token-major q/k/v ([T, H, D] in memory), as the projections
        # make them: given a head-major view (strides (D, T*D, 1)), its dq came out wrong on an H200.
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        scale = float(scaling if scaling is not None else dim**-0.5)
        out = _cudnn_function().apply(q, k, v, cu, _bucket(longest), scale)
        return out.view(batch, length, heads, dim), None
    fn = _varlen_fn()
    params = _params(fn)
    extra: dict[str, Any] = {"scale": scaling}
    if kv_heads != heads:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            k = k.repeat_interleave(heads // kv_heads, dim=1)
            v = v.repeat_interleave(heads // kv_heads, dim=1)
    if "is_causal" in params:
        extra["is_causal"] = True
    else:
        extra["window_size"] = (-1, 0)
    out = fn(q, k, v, cu, cu, longest, longest, **extra)
    return out.view(batch, length, heads, dim), None


@functools.cache
def _cudnn_function() -> Any:
    """cuDNN's varlen forward and backward ops in one autograd function (causal; GQA as it is, cuDNN
    takes fewer key/value heads). cudnn-frontend registers the same pair with torch.library's autograd,
    whose Python wrapper cost about 0.2 ms of CPU time a call; called here with grad mode off, the ops
    go straight to their kernels."""
    import torch
    from cudnn.sdpa.fwd.torch_op import thd_lse_to_padded

    class CudnnVarlen(torch.autograd.Function):  # type: ignore[misc]
        @staticmethod
        def forward(  # noqa: PLR0917
            ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, bound: int,
            scale: float,
        ) -> torch.Tensor:  # fmt: skip
            out, lse = torch.ops.cudnn.sdpa_fwd(
                q, k, v, scale, is_causal=True, cu_seqlens_q=cu, cu_seqlens_kv=cu,
                max_seqlen_q=bound, max_seqlen_kv=bound, return_lse=True,
            )  # fmt: skip
            ctx.save_for_backward(q, k, v, out, lse, cu)
            ctx.bound, ctx.scale = bound, scale
            return out

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
            q, k, v, out, lse, cu = ctx.saved_tensors
            bound = ctx.bound
            # the backward takes the forward's packed [T, H] log-sum-exp padded to [B, H, bound, 1]
            padded = thd_lse_to_padded(lse[:, :, 0], cu, bound)
            dq, dk, dv = torch.ops.cudnn.sdpa_bwd(
                grad, q, k, v, out, padded, ctx.scale, is_causal=True, cu_seqlens_q=cu, cu_seqlens_kv=cu,
                max_seqlen_q=bound, max_seqlen_kv=bound,
                is_deterministic=torch.are_deterministic_algorithms_enabled(),
            )  # fmt: skip
            return dq, dk, dv, None, None, None

    return CudnnVarlen


@functools.cache
def _params(fn: Any) -> frozenset[str]:
    return frozenset(inspect.signature(fn).parameters)
