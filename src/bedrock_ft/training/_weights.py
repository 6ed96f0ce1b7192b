"""The weights the fused LoRA path computes with: the base layer's weight (a 4-bit one dequantized) and
the LoRA matrices in the compute dtype, with as little CPU work per call as possible.

A 7B step calls these thousands of times, and with fast kernels the GPU finished its work sooner than
the CPU could queue it (benchmarks/train_profile.py's ``-cprof`` variants). So a 4-bit weight is
dequantized by bitsandbytes' own CUDA kernels, called as its torch ops call them but with its
quantization state read once, and the float32 LoRA matrices are cast to the compute dtype once a step
and kept (:func:`cached_cast`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["base_kind", "base_weight", "cached_cast", "cast", "watch_optimizers"]


def base_kind(base: Any) -> str | None:
    import torch

    try:
        import bitsandbytes as bnb

        if isinstance(base, bnb.nn.Linear4bit):
            return "4bit"
    except ImportError:
        pass
    return "linear" if type(base) is torch.nn.Linear else None


def base_weight(base: Any, dtype: torch.dtype) -> torch.Tensor:
    """The base layer's weight, [out, in], in ``dtype`` (a 4-bit weight dequantized)."""
    prepared = base.__dict__.get("bedrock_ft_dequantize")
    if prepared is not None and prepared[0]() is base.weight:
        return cast(prepared[1](), dtype)
    if base_kind(base) == "4bit":
        return cast(_prepare_dequantize(base)(), dtype)
    weight: torch.Tensor = base.weight
    return cast(weight, dtype)


def _bnb_dequantize(base: Any) -> torch.Tensor:
    import bitsandbytes.functional as bnbf
    from bitsandbytes.nn.modules import fix_4bit_weight_quant_state_from_module

    fix_4bit_weight_quant_state_from_module(base)
    out: torch.Tensor = bnbf.dequantize_4bit(base.weight.data, base.weight.quant_state)
    return out


def _prepare_dequantize(base: Any) -> Callable[[], torch.Tensor]:
    """A dequantizer for ``base``'s 4-bit weight that calls bitsandbytes' two kernels (the nested absmax,
    then the weight) with the quantization state read once: on CUDA directly (:func:`_raw_kernels`),
    elsewhere through its torch ops. bitsandbytes' ``dequantize_4bit`` re-reads and re-validates the
    state on every call, which cost more CPU time than the kernels take on the GPU (448 calls a step for
    a 32-layer model). Each way is checked once against bitsandbytes' own function, bit for bit; where
    neither takes the state (or they differ), bitsandbytes' function stays."""
    import torch

    weight = base.weight
    fallback = functools.partial(_bnb_dequantize, base)
    state = getattr(weight, "quant_state", None)
    ops = getattr(torch.ops, "bitsandbytes", None)
    fast: Callable[[], torch.Tensor] = fallback
    if state is not None and ops is not None and weight.data.shape[0] != 1:
        packed, args = weight.data, (state.blocksize, state.quant_type, state.shape, state.dtype)
        nested, inner, offset = state.absmax, state.state2, state.offset
        code = inner.code.to(packed.device) if state.nested else None

        def direct() -> torch.Tensor:
            absmax = nested
            if code is not None:  # double quantization: the absmax is itself 8-bit, blockwise
                absmax = ops.dequantize_blockwise.default(
                    nested, inner.absmax, code, inner.blocksize, torch.float32
                ).add_(offset)
            out: torch.Tensor = ops.dequantize_4bit.default(packed, absmax, *args)
            return out

        want = fallback()
        for candidate in (_raw_kernels(packed, state, code, direct), direct):
            if candidate is None:
                continue
            try:
                if torch.equal(candidate(), want):
                    fast = candidate
                    break
            except Exception:  # a state this path doesn't read: the next one, or bitsandbytes' own function
                continue
    base.__dict__["bedrock_ft_dequantize"] = (weakref.ref(weight), fast)
    return fast


_KERNEL_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def _raw_kernels(
    packed: torch.Tensor, state: Any, code: torch.Tensor | None, elsewhere: Callable[[], torch.Tensor]
) -> Callable[[], torch.Tensor] | None:
    """bitsandbytes' two CUDA kernels called exactly as its torch ops' CUDA implementations call them,
    without the trip through torch's dispatcher, the device guard and the contiguity copy: the weight
    is contiguous, and a call made while another device is current goes to ``elsewhere`` (the kernels
    launch on the current device). None where this bitsandbytes lays its kernels out differently."""
    import torch

    try:
        from bitsandbytes.cextension import lib

        name = _KERNEL_DTYPES[str(state.dtype).removeprefix("torch.")]
        weight_kernel = getattr(lib, f"cdequantize_blockwise_{name}_{state.quant_type}")
        absmax_kernel = lib.cdequantize_blockwise_fp32
    except (ImportError, AttributeError, KeyError):
        return None
    nested, inner, offset = state.absmax, state.state2, state.offset
    if packed.device.type != "cuda" or not packed.is_contiguous() or not nested.is_contiguous():
        return None
    device, index = packed.device, packed.device.index
    shape, dtype, blocksize = state.shape, state.dtype, state.blocksize
    current, stream_of = torch.cuda.current_device, torch._C._cuda_getCurrentRawStream

    def raw() -> torch.Tensor:
        if current() != index:
            return elsewhere()
        stream = stream_of(index)
        absmax = nested
        if code is not None:  # double quantization: the absmax is itself 8-bit, blockwise
            absmax = torch.empty(nested.shape, dtype=torch.float32, device=device)
            absmax_kernel(code.data_ptr(), nested.data_ptr(), inner.absmax.data_ptr(), absmax.data_ptr(),
                          inner.blocksize, nested.numel(), stream)  # fmt: skip
            absmax.add_(offset)
        out = torch.empty(shape, dtype=dtype, device=device)
        weight_kernel(
            None, packed.data_ptr(), absmax.data_ptr(), out.data_ptr(), blocksize, out.numel(), stream
        )
        return out

    return raw


def cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` in ``dtype``; no call into torch when it already is (a no-op ``.to`` still costs CPU time)."""
    return t if t.dtype == dtype else t.to(dtype)


_OPTIMIZER_STEPS = [0]  # every torch optimizer's steps, counted by a global hook: cached casts expire


@functools.cache
def watch_optimizers() -> None:
    """Count optimizer steps (torch.optim's global step hook, which every torch optimizer runs). A fused
    AdamW step changes the weights in place without bumping their version counters, so the version alone
    can't tell a cached cast is stale."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    def count(*_: Any) -> None:
        _OPTIMIZER_STEPS[0] += 1

    register_optimizer_step_post_hook(count)


def cached_cast(owner: Any, name: str, weights: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The LoRA ``weights`` in ``dtype`` (stacked on dim 0 when several), kept on ``owner`` and reused
    until the next optimizer step or an in-place change of a weight: the forward, the checkpointed
    recomputation and the backward of a step (and every micro-step of an accumulation) cast them once.
    A change made through ``weight.data`` bumps no version counter and isn't seen before the next step.
    With ``owner`` None nothing is kept: the weights are cast (and stacked) for this call only."""
    import torch

    def build() -> torch.Tensor:
        with torch.no_grad():
            return (
                cast(weights[0], dtype) if len(weights) == 1 else torch.cat([cast(w, dtype) for w in weights])
            )

    if owner is None:
        return build()
    watch_optimizers()
    stamp = (_OPTIMIZER_STEPS[0], dtype, tuple((id(w), w._version) for w in weights))
    entries = getattr(owner, "bedrock_ft_casts", None)
    if entries is None:
        entries = owner.bedrock_ft_casts = {}
    hit = entries.get(name)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    out = build()
    if out is weights[0]:  # already in dtype: nothing to keep
        return out
    entries[name] = (stamp, out)
    return out
