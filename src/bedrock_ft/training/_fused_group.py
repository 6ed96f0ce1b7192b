"""Sibling LoRA layers that read the same input, fused as one autograd node.

Attention's q/k/v projections read the same hidden states, and so do the MLP's gate/up projections.
Fused one by one (``_fused``), each reads that input again for its rank-r product ``x A^T`` in the
forward, in the recomputation and in its ``lora_A`` gradient, and autograd adds their three (or two)
input gradients together in full-size passes. :class:`FusedLoRAGroup` computes the group's products
with one GEMM on the stacked ``A`` matrices, its ``lora_A`` gradients with one GEMM, and accumulates the
input gradient of every member into one buffer in the GEMMs' epilogues.

The model still calls each projection itself: the first member called computes the whole group and
keeps the other outputs for their own calls, which hand them back when they come with the same input
tensor (unchanged since). Anything else (another input, eval mode, dropout, a disabled or merged
adapter) takes the one-layer path, so a model that calls its projections differently is still right.
"""

from __future__ import annotations

import functools
import weakref
from types import MethodType
from typing import TYPE_CHECKING, Any

from bedrock_ft.training._fused import _compute_dtype, _fused_forward, _keeps_weight, compare
from bedrock_ft.training._weights import base_weight, cached_cast, cast

if TYPE_CHECKING:
    import torch

__all__ = ["GROUPS", "fused_lora_group", "group_layers"]

GROUPS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class Group:
    """The members of one group, and the outputs computed for the members not called yet."""

    __slots__ = ("bedrock_ft_casts", "members", "names", "pending", "version", "x")

    def __init__(self, members: list[Any], names: tuple[str, ...]) -> None:
        self.bedrock_ft_casts: dict[str, Any] = {}  # the stacked A matrices in the compute dtype
        self.members = [weakref.ref(m) for m in members]
        self.names = names
        self.x: Any = None  # a weak reference to the input the pending outputs were computed from
        self.version = -1
        self.pending: dict[int, Any] = {}

    def take(self, index: int, x: Any) -> Any:
        if self.x is None or self.x() is not x or x._version != self.version:
            return None
        out = self.pending.pop(index, None)
        if not self.pending:
            self.x = None
        return out

    def put(self, x: Any, outs: tuple[Any, ...], index: int) -> None:
        self.x, self.version = weakref.ref(x), x._version
        self.pending = {j: out for j, out in enumerate(outs) if j != index}

    def clear(self) -> None:
        self.x, self.pending = None, {}


def group_layers(model: Any, fused: list[str]) -> int:
    """Group the fused layers named in :data:`GROUPS` under one parent; the number of groups made."""
    names = set(fused)
    count = 0
    for parent_name, parent in model.named_modules():
        for group_names in GROUPS:
            members: list[Any] = [getattr(parent, n, None) for n in group_names]
            full = [f"{parent_name}.{n}" if parent_name else n for n in group_names]
            if any(m is None for m in members) or not names.issuperset(full) or not _compatible(members):
                continue
            group = Group(members, group_names)
            for i, member in enumerate(members):
                member.bedrock_ft_group = (group, i)
                member.forward = MethodType(_group_forward, member)
            count += 1
    return count


def _compatible(members: list[Any]) -> bool:
    adapters = {tuple(m.active_adapters) for m in members}
    if len(adapters) != 1:
        return False
    adapter = next(iter(adapters))[0]
    shapes = {m.lora_A[adapter].weight.shape[1] for m in members}
    kinds = {type(m.base_layer) for m in members}
    return len(shapes) == 1 and len(kinds) == 1


def _plain(module: Any) -> bool:
    adapters = module.active_adapters
    if module.disable_adapters or module.merged or len(adapters) != 1:
        return False
    return float(getattr(module.lora_dropout[adapters[0]], "p", 0.0)) == 0.0


def _group_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    group, index = self.bedrock_ft_group
    if args or kwargs or not self.training:
        group.clear()
        return _fused_forward(self, x, *args, **kwargs)
    out = group.take(index, x)  # computed by the first member called, for this very input
    if out is not None:
        return out
    members = [ref() for ref in group.members]
    if not all(m is not None and _plain(m) for m in members):
        group.clear()
        return _fused_forward(self, x, *args, **kwargs)
    outs = fused_lora_group(x, members, keep_weight=_keeps_weight(self), group=group)
    group.put(x, outs, index)
    return outs[index]


def fused_lora_group(
    x: torch.Tensor, members: list[Any], *, keep_weight: bool = False, group: Any = None
) -> tuple[Any, ...]:
    """Every member's ``base(x) + scaling * B(A(x))``, in one autograd node (no dropout). ``group`` keeps
    the stacked A matrices in the compute dtype for the step, and each member its B (see cached_cast)."""
    adapter = members[0].active_adapters[0]
    a = [m.lora_A[adapter].weight for m in members]
    b = [m.lora_B[adapter].weight for m in members]
    bases = tuple(m.base_layer for m in members)
    scalings = tuple(float(m.scaling[adapter]) for m in members)
    # who keeps the compute-dtype copies: the group its stacked A, each member its B (None: nobody)
    owners = (group, tuple(members)) if group is not None else (None, (None,) * len(members))
    fn: Any = _function()
    outs: tuple[Any, ...] = fn.apply(x, bases, scalings, keep_weight, owners, *a, *b)
    return outs


@functools.cache
def _function() -> Any:
    import torch

    class FusedLoRAGroup(torch.autograd.Function):  # type: ignore[misc]
        @staticmethod
        def forward(  # noqa: PLR0917
            ctx: Any, x: torch.Tensor, bases: tuple[Any, ...], scalings: tuple[float, ...],
            keep_weight: bool, owners: Any, *ab: torch.Tensor,
        ) -> tuple[torch.Tensor, ...]:  # fmt: skip
            n = len(bases)
            a, b = ab[:n], ab[n:]
            dtype = _compute_dtype(x, bases[0])
            x2 = cast(x.reshape(-1, x.shape[-1]), dtype)
            ranks = [t.shape[0] for t in a]
            xa = x2 @ cached_cast(owners[0], "A", list(a), dtype).t()  # [N, sum r]: one read of x for all
            cols = _columns(ranks)
            if len(set(scalings)) == 1:
                xa.mul_(scalings[0])
            else:
                for (lo, hi), s in zip(cols, scalings, strict=True):
                    xa[:, lo:hi].mul_(s)
            outs, kept = [], []
            for i, ((lo, hi), base, bi) in enumerate(zip(cols, bases, b, strict=True)):
                bias = getattr(base, "bias", None)
                b_ = cached_cast(owners[1][i], "B", [bi], dtype)
                out = (
                    torch.addmm(cast(bias, dtype), xa[:, lo:hi], b_.t())
                    if bias is not None
                    else xa[:, lo:hi] @ b_.t()
                )
                w = base_weight(base, dtype)
                out.addmm_(x2, w.t())  # the base GEMM accumulates onto the LoRA term (see _fused)
                if keep_weight:
                    kept.append(w)
                del w
                outs.append(cast(out.view(*x.shape[:-1], out.shape[-1]), x.dtype))
            ctx.save_for_backward(x2, xa, *a, *b, *kept)
            ctx.bases, ctx.scalings, ctx.x_shape, ctx.x_dtype = bases, scalings, x.shape, x.dtype
            ctx.owners = owners
            return tuple(outs)

        @staticmethod
        def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[Any, ...]:
            n = len(ctx.bases)
            x2, xa, *rest = ctx.saved_tensors
            a, b, kept = rest[:n], rest[n : 2 * n], rest[2 * n :]
            dtype = x2.dtype
            cols = _columns([t.shape[0] for t in a])
            gs = [cast(g.reshape(-1, g.shape[-1]), dtype) if g is not None else None for g in grads]
            dxa_parts: list[Any] = []
            grad_b: list[Any] = []
            for i, ((lo, hi), g, bi, s) in enumerate(zip(cols, gs, b, ctx.scalings, strict=True)):
                if g is None:  # an output the loss doesn't use
                    dxa_parts.append(xa.new_zeros(xa.shape[0], hi - lo))
                    grad_b.append(None)
                    continue
                dxa_parts.append((g @ cached_cast(ctx.owners[1][i], "B", [bi], dtype)).mul_(s))
                grad_b.append(cast(g.t() @ xa[:, lo:hi], bi.dtype))  # xa holds the scaling already
            dxa = torch.cat(dxa_parts, dim=1)  # [N, sum r]
            del dxa_parts
            needs = ctx.needs_input_grad
            grad_a: list[Any] = [None] * n
            if any(needs[5 : 5 + n]):
                stacked = dxa.t() @ x2  # every lora_A gradient from one read of x
                grad_a = [cast(stacked[lo:hi], ai.dtype) for (lo, hi), ai in zip(cols, a, strict=True)]
            grad_x = None
            if needs[0]:
                # the LoRA terms first, then each base GEMM accumulates onto them
                dx = dxa @ cached_cast(ctx.owners[0], "A", list(a), dtype)
                for i, (g, base) in enumerate(zip(gs, ctx.bases, strict=True)):
                    if g is None:
                        continue
                    w = kept[i] if kept else base_weight(base, dtype)
                    dx.addmm_(g, w)
                    del w
                grad_x = cast(dx.view(ctx.x_shape), ctx.x_dtype)
            grad_b = [gb if needs[5 + n + i] else None for i, gb in enumerate(grad_b)]
            return (grad_x, None, None, None, None, *grad_a, *grad_b)

    return FusedLoRAGroup


def _columns(ranks: list[int]) -> list[tuple[int, int]]:
    cols, lo = [], 0
    for r in ranks:
        cols.append((lo, lo + r))
        lo += r
    return cols


def check_groups(model: Any, *, tokens: int = 64, tol: float) -> None:
    """Each group against its members' peft paths on one random input: every output, the summed input
    gradient and each member's lora_A and lora_B gradients, relative L2 error at most ``tol``."""
    import torch

    gen = torch.Generator().manual_seed(1)
    seen: set[int] = set()
    for name, module in model.named_modules():
        entry = getattr(module, "bedrock_ft_group", None)
        if entry is None or id(entry[0]) in seen:
            continue
        group = entry[0]
        seen.add(id(group))
        members = [ref() for ref in group.members]
        adapter = members[0].active_adapters[0]
        a = [m.lora_A[adapter].weight for m in members]
        b = [m.lora_B[adapter].weight for m in members]
        dtype = _compute_dtype(a[0], members[0].base_layer)
        saved = [t.detach().clone() for t in b]
        x = (torch.randn(tokens, a[0].shape[1], generator=gen) * 0.5).to(a[0].device, dtype)
        gs = [torch.randn(tokens, t.shape[0], generator=gen).to(t.device, dtype) for t in b]
        with torch.no_grad():
            for t in b:
                t.copy_(torch.randn(t.shape, generator=gen).to(t.device, t.dtype) / t.shape[1] ** 0.5)
        try:
            ref = _run_group(members, a, b, x, gs, grouped=False)
            got = _run_group(members, a, b, x, gs, grouped=True)
        finally:
            with torch.no_grad():
                for t, s in zip(b, saved, strict=True):
                    t.copy_(s)
            for t in (*a, *b):
                t.grad = None
        parent = name.rpartition(".")[0]
        for label, want, have in _pairs(group.names, ref, got):
            compare(f"{parent} (its grouped projections)", label, have, want, tol)


def _pairs(names: tuple[str, ...], ref: tuple[Any, ...], got: tuple[Any, ...]) -> list[tuple[str, Any, Any]]:
    out = [(f"{nm} output", r, g) for nm, r, g in zip(names, ref[0], got[0], strict=True)]
    out.append(("the input gradient", ref[1], got[1]))
    out += [(f"{nm} lora_A gradient", r, g) for nm, r, g in zip(names, ref[2], got[2], strict=True)]
    out += [(f"{nm} lora_B gradient", r, g) for nm, r, g in zip(names, ref[3], got[3], strict=True)]
    return out


def _run_group(
    members: list[Any], a: list[Any], b: list[Any], x: Any, gs: list[Any], *, grouped: bool
) -> tuple[Any, ...]:
    import torch

    for t in (*a, *b):
        t.grad = None
    xi = x.clone().requires_grad_(True)
    with torch.autocast(x.device.type, dtype=x.dtype, enabled=x.device.type == "cuda"):
        outs = fused_lora_group(xi, members) if grouped else tuple(type(m).forward(m, xi) for m in members)
    torch.autograd.backward(list(outs), gs)
    assert xi.grad is not None
    return (
        [o.detach() for o in outs],
        xi.grad.detach(),
        [t.grad.detach().clone() for t in a],
        [t.grad.detach().clone() for t in b],
    )
