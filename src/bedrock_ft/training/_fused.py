"""The fused LoRA path: one autograd function per adapted linear layer, in place of peft's chain.

peft computes a LoRA layer as ``base(x).clone() + lora_B(lora_A(dropout(x))) * scaling``: a clone, a
scaling pass and an add over the whole output, each forward (twice with gradient checkpointing), and
their mirror images in the backward, plus a full-size dropout copy of ``x`` kept for the backward.
:class:`FusedLoRA` computes the same function with the LoRA product folded into the base matmul's
output: the rank-r product ``(x A^T) B^T`` is written first, and the base GEMM accumulates onto it in
its epilogue (``out.addmm_(x, W^T)``, beta=1), so the LoRA term costs one write of the output instead
of a read and a write; the input gradient's LoRA term is folded the same way. It saves only ``x`` and
the rank-r product ``x A^T``; dropout keeps a random seed instead of a mask and regenerates the mask
in the backward. In a checkpointed layer the 4-bit weight dequantized by the recomputed forward is
kept for the backward that follows it (two dequantizations a step instead of bitsandbytes' three).

The weights it computes with (the base weight dequantized, A and B in the compute dtype, cast once a
step) come from ``_weights``, which keeps the CPU's work per call small.

The adapter stays a plain peft adapter: the patch swaps a module's ``forward`` and nothing else, so
``lora_A`` / ``lora_B`` are the same parameters, saved, merged and loaded by stock peft.

:func:`fuse_lora` decides where the path applies and says why it doesn't: CUDA only (CPU trains through
peft's layers unchanged), not under FSDP (it flattens the 4-bit weights the path reads), not with
``bias`` other than ``'none'`` (the path trains no biases), and per layer not for DoRA or other peft
variants. ``check=True`` compares every fused layer with peft's own forward and backward at start-up
and names the first layer that disagrees.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MethodType
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import TrainingError
from bedrock_ft.training._weights import base_kind, base_weight, cached_cast, cast

if TYPE_CHECKING:
    import torch

    from bedrock_ft.training._config import QLoRAConfig, TrainingConfig
    from bedrock_ft.training._distributed import RankInfo

__all__ = [
    "CHECK_TOLERANCE",
    "FusedReport",
    "forced_but_blocked",
    "fuse_lora",
    "fused_lora_blocker",
    "fused_lora_linear",
]

CHECK_TOLERANCE = 2e-2  # relative L2 error against peft's path, in bf16 (both round differently)


def fused_lora_blocker(
    qlora: QLoRAConfig, training: TrainingConfig, device: str, rank: RankInfo | None
) -> str | None:
    """Why the fused path can't apply to this run, or None when it can."""
    if device != "cuda":
        return f"it runs on CUDA GPUs and this run trains on {device.upper()}"
    if rank is not None and rank.fsdp:
        return "FSDP flattens the 4-bit weights it reads (use strategy='ddp' for the fused path)"
    if qlora.bias != "none":
        return f"bias={qlora.bias!r} trains biases, which the fused path doesn't (use bias='none')"
    return None


def forced_but_blocked(blocker: str) -> TrainingError:
    """The error for ``fused_lora=True`` where the path can't apply."""
    return TrainingError(f"fused_lora=True, but the fused LoRA path can't apply: {blocker}")


@dataclass
class FusedReport:
    """What :func:`fuse_lora` did: the layers it fused, and those it left to peft with the reason."""

    fused: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> reason
    off: str | None = None  # why the path is off for the whole run
    groups: int = 0  # groups of fused layers that share their input (q/k/v, gate/up)

    def summary(self) -> str:
        if self.off:
            return f"fused LoRA off: {self.off}"
        line = f"fused LoRA on {len(self.fused)} layers"
        if self.groups:
            line += f" ({self.groups} groups sharing an input)"
        if self.skipped:
            reasons = sorted(set(self.skipped.values()))
            line += f"; {len(self.skipped)} left to peft ({'; '.join(reasons)})"
        return line


def fuse_lora(
    model: Any,
    qlora: QLoRAConfig,
    training: TrainingConfig,
    *,
    device: str,
    rank: RankInfo | None = None,
) -> FusedReport:
    """Put the fused path on every LoRA layer of ``model`` where it applies (``training.fused_lora``:
    None applies it where it can, True requires it, False leaves peft's path)."""
    report = FusedReport()
    if training.fused_lora is False:
        report.off = "fused_lora=False"
        return report
    blocker = fused_lora_blocker(qlora, training, device, rank)
    if blocker is None and qlora.dropout > 0 and training.fused_lora is None:
        blocker = (
            f"LoRA dropout {qlora.dropout:g}: the fused path draws the mask three times a step and is "
            "slower than peft's there (set dropout=0, or fused_lora=True to use it anyway)"
        )
    if blocker is not None:
        if training.fused_lora:
            raise forced_but_blocked(blocker)
        report.off = blocker
        return report
    checkpointed = {name: m for name, m in model.named_modules() if hasattr(m, "gradient_checkpointing")}
    for name, module in model.named_modules():
        reason = _layer_blocker(module)
        if reason is None:
            owner = max((n for n in checkpointed if name.startswith(n + ".")), key=len, default=None)
            _patch(module, checkpointed[owner] if owner is not None else None)
            report.fused.append(name)
        elif reason != "not a LoRA layer":
            report.skipped[name] = reason
    if not report.fused:
        report.off = "no LoRA layer of this model has a linear or 4-bit linear base"
        if training.fused_lora:
            raise forced_but_blocked(report.off)
    from bedrock_ft.training._fused_group import check_groups, group_layers

    if qlora.dropout == 0:  # a group shares one input, which per-layer dropout masks would not
        report.groups = group_layers(model, report.fused)
    if training.fused_lora_check:
        check_fused(model, report.fused)
        check_groups(model, tol=CHECK_TOLERANCE)
    return report


def _layer_blocker(module: Any) -> str | None:
    if not (hasattr(module, "lora_A") and hasattr(module, "base_layer") and hasattr(module, "scaling")):
        return "not a LoRA layer"
    kind = base_kind(module.base_layer)
    if kind is None:
        return f"its base is a {type(module.base_layer).__name__}, not a linear or 4-bit linear layer"
    adapters = [a for a in module.active_adapters if a in module.lora_A]
    if len(adapters) != 1:
        return f"{len(adapters)} active adapters (the fused path takes one)"
    adapter = adapters[0]
    if getattr(module, "use_dora", {}).get(adapter) or adapter in getattr(module, "lora_variant", {}):
        return "DoRA or another peft LoRA variant"
    if getattr(module, "lora_bias", {}).get(adapter):
        return "lora_bias"
    if getattr(module.base_layer, "bias", None) is not None and module.base_layer.bias.requires_grad:
        return "a trainable base bias"
    return None


def _patch(module: Any, layer: Any) -> None:
    """``layer``: the decoder layer holding ``module``, whose gradient checkpointing decides whether the
    dequantized weight is kept for the backward (see :func:`_keeps_weight`)."""
    module.forward = MethodType(_fused_forward, module)
    module.bedrock_ft_fused = True
    module.bedrock_ft_layer = weakref.ref(layer) if layer is not None else None


def _keeps_weight(module: Any) -> bool:
    """Keep the dequantized weight from the forward for the backward, instead of dequantizing again,
    when the layer is checkpointed: the first forward's saved tensors are dropped by the checkpoint, so
    the weight is held only from the layer's recomputation to its backward, one layer at a time."""
    ref = getattr(module, "bedrock_ft_layer", None)
    layer = ref() if ref is not None else None
    return bool(layer is not None and layer.gradient_checkpointing and layer.training)


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    adapters = self.active_adapters
    if args or kwargs or self.disable_adapters or self.merged or len(adapters) != 1:
        return type(self).forward(self, x, *args, **kwargs)  # peft's own path handles these
    adapter = adapters[0]
    dropout = self.lora_dropout[adapter]
    p = float(getattr(dropout, "p", 0.0)) if self.training else 0.0
    return fused_lora_linear(
        x, self.base_layer, self.lora_A[adapter].weight, self.lora_B[adapter].weight,
        scaling=self.scaling[adapter], p=p, keep_weight=_keeps_weight(self), owner=self,
    )  # fmt: skip


def dropout_mask(x: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """The keep mask, scaled by 1/(1-p), that seed ``seed`` gives: the same in the forward and backward."""
    import torch

    gen = torch.Generator(device=x.device)
    gen.manual_seed(seed)
    keep = torch.rand(x.shape, generator=gen, device=x.device, dtype=torch.float32) >= p
    return keep.to(x.dtype).mul_(1.0 / (1.0 - p))


def fused_lora_linear(
    x: torch.Tensor,
    base: Any,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    scaling: float,
    p: float = 0.0,
    keep_weight: bool = False,
    owner: Any = None,
) -> torch.Tensor:
    """``base(x) + scaling * B(A(dropout_p(x)))`` in one autograd node; ``keep_weight`` saves the
    dequantized base weight for the backward instead of dequantizing it again; ``owner`` (the LoRA
    layer) keeps the compute-dtype copies of A and B for the step (see :func:`cached_cast`)."""
    fn: Any = _function()
    out: torch.Tensor = fn.apply(x, a, b, base, float(scaling), float(p), keep_weight, owner)
    return out


@functools.cache
def _function() -> Any:
    """The autograd function, built on first use (torch stays out of ``import bedrock_ft``)."""
    import torch

    class FusedLoRA(torch.autograd.Function):  # type: ignore[misc]
        @staticmethod
        def forward(  # noqa: PLR0917
            ctx: Any,
            x: torch.Tensor,
            a: torch.Tensor,
            b: torch.Tensor,
            base: Any,
            scaling: float,
            p: float,
            keep_weight: bool,
            owner: Any,
        ) -> torch.Tensor:
            dtype = _compute_dtype(x, base)
            x2 = cast(x.reshape(-1, x.shape[-1]), dtype)
            a_, b_ = cached_cast(owner, "A", [a], dtype), cached_cast(owner, "B", [b], dtype)
            seed = int(torch.randint(0, 2**62, (1,)).item()) if p > 0 else 0
            xd = x2 * dropout_mask(x2, p, seed) if p > 0 else x2
            xa = (xd @ a_.t()).mul_(scaling)  # [N, r], scaled: the scaling costs r columns, not `out`
            bias = getattr(base, "bias", None)
            # The LoRA term first (a write-only pass over the output), then the base GEMM adds itself to
            # it in its epilogue (beta=1): adding the LoRA term afterwards would read and write the whole
            # output again, in a memory-bound rank-r GEMM.
            out = torch.addmm(cast(bias, dtype), xa, b_.t()) if bias is not None else xa @ b_.t()
            w = base_weight(base, dtype)
            out.addmm_(x2, w.t())
            ctx.save_for_backward(x2, xa, a, b, *((w,) if keep_weight else ()))
            del w
            ctx.base, ctx.scaling, ctx.p, ctx.seed, ctx.x_shape, ctx.x_dtype, ctx.owner = (
                base, scaling, p, seed, x.shape, x.dtype, owner,
            )  # fmt: skip
            return cast(out.view(*x.shape[:-1], out.shape[-1]), x.dtype)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
            x2, xa, a, b, *kept = ctx.saved_tensors
            dtype = x2.dtype
            g = cast(grad.reshape(-1, grad.shape[-1]), dtype)
            a_, b_ = cached_cast(ctx.owner, "A", [a], dtype), cached_cast(ctx.owner, "B", [b], dtype)
            dxa = (g @ b_).mul_(ctx.scaling)  # [N, r]
            grad_b = grad_a = grad_x = None
            if ctx.needs_input_grad[2]:
                grad_b = cast(g.t() @ xa, b.dtype)  # xa holds the scaling already
            mask = dropout_mask(x2, ctx.p, ctx.seed) if ctx.p > 0 else None
            if ctx.needs_input_grad[1]:
                xd = x2 * mask if mask is not None else x2
                grad_a = cast(dxa.t() @ xd, a.dtype)
                del xd
            if ctx.needs_input_grad[0]:
                # as in the forward: the LoRA term first, then the base GEMM accumulates onto it
                dx = dxa @ a_
                if mask is not None:
                    dx.mul_(mask)
                w = kept[0] if kept else base_weight(ctx.base, dtype)
                dx.addmm_(g, w)
                del w
                grad_x = cast(dx.view(ctx.x_shape), ctx.x_dtype)
            return grad_x, grad_a, grad_b, None, None, None, None, None

    return FusedLoRA


def _compute_dtype(x: torch.Tensor, base: Any) -> torch.dtype:
    """What bitsandbytes computes in: the layer's compute dtype, else the autocast dtype, else x's."""
    import torch

    compute = getattr(base, "compute_dtype", None)
    if compute is not None:
        return compute
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


# --- the start-up check --------------------------------------------------------------------------


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    want = want.float()
    denom = float(want.norm()) or 1.0
    return float((got.float() - want).norm()) / denom


def check_fused(model: Any, names: list[str], *, tokens: int = 64, tol: float = CHECK_TOLERANCE) -> None:
    """Each fused layer against peft's own path on a random input, with a random nonzero B (a fresh
    adapter's B is zero, which would hide the B path): output and the three gradients, relative L2
    error at most ``tol``. Raises TrainingError naming the first layer that disagrees."""
    import torch

    modules = dict(model.named_modules())
    gen = torch.Generator().manual_seed(0)
    for name in names:
        module = modules[name]
        adapter = module.active_adapters[0]
        a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
        dtype = _compute_dtype(a, module.base_layer)
        saved_b = b.detach().clone()
        x = (torch.randn(tokens, a.shape[1], generator=gen) * 0.5).to(a.device, dtype)
        g = torch.randn(tokens, b.shape[0], generator=gen).to(a.device, dtype)
        with torch.no_grad():
            b.copy_(torch.randn(b.shape, generator=gen).to(b.device, b.dtype) / math.sqrt(b.shape[1]))
        was_training = module.training
        module.eval()  # no dropout: the two paths draw different masks
        try:
            results = []
            for forward in (type(module).forward, _fused_forward):
                results.append(_run(module, forward, x, g))
        finally:
            with torch.no_grad():
                b.copy_(saved_b)
            a.grad = b.grad = None
            module.train(was_training)
        (ref_out, *ref_grads), (out, *grads) = results
        for what, got, want in (("output", out, ref_out), ("input gradient", grads[0], ref_grads[0]),
                                ("lora_A gradient", grads[1], ref_grads[1]),
                                ("lora_B gradient", grads[2], ref_grads[2])):  # fmt: skip
            compare(name, f"its {what}", got, want, tol)


def compare(where: str, what: str, got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    """Raise the start-up check's error, naming ``where`` and ``what``, when ``got`` is further than
    ``tol`` (relative L2) from peft's ``want``."""
    err = _relative_error(got, want)
    if not err <= tol:
        raise TrainingError(
            f"fused LoRA check failed at {where}: {what} differs from peft's by {err:.2e} (relative L2; "
            f"tolerance {tol:.0e}). Set fused_lora=False to train through peft's layers, and report this "
            "with the model's architecture"
        )


def _run(module: Any, forward: Callable[..., Any], x: torch.Tensor, g: torch.Tensor) -> tuple[Any, ...]:
    import torch

    adapter = module.active_adapters[0]
    a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
    a.grad = b.grad = None
    xi = x.clone().requires_grad_(True)
    with torch.autocast(x.device.type, dtype=x.dtype, enabled=x.device.type == "cuda"):
        out = forward(module, xi)
    out.backward(g)
    assert xi.grad is not None and a.grad is not None and b.grad is not None
    return out.detach(), xi.grad.detach(), a.grad.detach().clone(), b.grad.detach().clone()
