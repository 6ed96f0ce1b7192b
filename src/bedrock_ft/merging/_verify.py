"""The streaming merge's check: recompute a sample of merged weights with peft's own LoRA layer and
compare them with what was written, read back with the safetensors library.

Independent of the merge code on purpose: peft computes each reference (its own scaling, rank and
alpha patterns, fan_in_fan_out), and the written file is read by another reader than the one that
wrote it. A wrong key, scale or layout fails it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import MergeError
from bedrock_ft.merging._checkpoint import INDEX_NAME, Stored, read_ranges
from bedrock_ft.merging._streaming import torch_dtype

if TYPE_CHECKING:
    import torch

    from bedrock_ft.merging._adapter import AdapterPlan, LoraTarget

__all__ = ["ROUNDING", "check_weights", "sample"]

ROUNDING = {"float32": 2.0**-20, "float16": 2.0**-10, "bfloat16": 2.0**-7}
"""Relative error one rounding to the dtype may add, with a factor 2 of margin."""


def sample(names: list[str], k: int) -> list[str]:
    """``k`` names spread evenly over the list, first and last included."""
    if k >= len(names):
        return list(names)
    if k == 1:
        return [names[0]]
    return [names[round(i * (len(names) - 1) / (k - 1))] for i in range(k)]


ROWS = 64
"""Rows checked per block; three blocks (first, middle, last) per sampled weight."""


def _read(stored: Stored, start: int = 0, end: int | None = None) -> torch.Tensor:
    """Rows ``[start, end)`` of a stored tensor (all of it by default)."""
    import torch

    shape = stored.info.shape
    rows = shape[0] if shape else 1
    end = rows if end is None else end
    row_bytes = stored.info.nbytes // max(rows, 1)
    length = (end - start) * row_bytes
    buf = bytearray(length)
    for _ in read_ranges(stored.path, stored.info.offset + start * row_bytes, length, max(length, 1), buf):
        pass
    return torch.frombuffer(buf, dtype=torch_dtype(stored.info.dtype)).view(
        (end - start, *shape[1:]) if shape else ()
    )


def _blocks(rows: int) -> list[tuple[int, int]]:
    if rows <= 3 * ROWS:
        return [(0, rows)]
    middle = (rows - ROWS) // 2
    return [(0, ROWS), (middle, middle + ROWS), (rows - ROWS, rows)]


def _peft_reference(
    w: torch.Tensor, a: torch.Tensor, b: torch.Tensor, target: LoraTarget, config: Mapping[str, Any]
) -> torch.Tensor:
    """``W + delta`` with delta from peft's LoRA Linear, configured from adapter_config.json."""
    import torch
    from peft import LoraConfig
    from peft.tuners.lora import Linear as LoraLinear

    lora = LoraConfig(**{k: v for k, v in config.items() if k in LoraConfig.__dataclass_fields__})
    module = target.weight.removesuffix(".weight")
    try:
        from peft.utils.other import get_pattern_key

        alpha = lora.alpha_pattern.get(get_pattern_key(list(lora.alpha_pattern), module), lora.lora_alpha)
    except ImportError:  # pragma: no cover - older peft
        alpha = lora.lora_alpha
    out_f, in_f = (w.shape[1], w.shape[0]) if target.fan_in_fan_out else (w.shape[0], w.shape[1])
    base = torch.nn.Linear(in_f, out_f, bias=False)
    layer = LoraLinear(base, "default", config=lora, r=a.shape[0], lora_alpha=alpha)
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(a.float())
        layer.lora_B["default"].weight.copy_(b.float())
        delta = layer.get_delta_weight("default")
    return w.float() + delta.float()


def check_weights(
    out_dir: Path,
    base: Mapping[str, Stored],
    plan: AdapterPlan,
    adapter: Mapping[str, torch.Tensor],
    adapter_config: Mapping[str, Any],
    *,
    dtype: str,
    layers: int,
) -> dict[str, Any]:
    """Compare sampled merged weights (and one untouched tensor) with their references."""
    from safetensors import safe_open

    weight_map: dict[str, str] = json.loads((out_dir / INDEX_NAME).read_text())["weight_map"]
    bound = ROUNDING[dtype]
    checked, worst_abs, worst_rel, effect = [], 0.0, 0.0, 0.0
    for name in sample([n for n in base if n in plan.targets], layers):
        target = plan.targets[name]
        a, b = adapter[target.a_key], adapter[target.b_key]
        # Blocks of rows keep the check cheap on a 7B; fan_in_fan_out layouts are checked whole.
        blocks = (
            [(0, base[name].info.shape[0])] if target.fan_in_fan_out else _blocks(base[name].info.shape[0])
        )
        for start, end in blocks:
            w = _read(base[name], start, end)
            ref = _peft_reference(w, a, b if target.fan_in_fan_out else b[start:end], target, adapter_config)
            with safe_open(str(out_dir / weight_map[name]), framework="pt") as fh:
                got = fh.get_slice(name)[start:end].float()
            err = (got - ref).abs()
            scale = float(ref.abs().max())
            worst_abs = max(worst_abs, float(err.max()))
            worst_rel = max(worst_rel, float(err.max()) / max(scale, 1e-30))
            effect = max(effect, float((ref - w.float()).abs().max()))
            # Elementwise: one rounding of ref, and an absolute slack for sums that cancel to near zero.
            if bool((err > bound * ref.abs() + bound * scale * 1e-3).any()):
                rel = float((err / ref.abs().clamp_min(1e-30)).max())
                raise MergeError(
                    f"merged weight {name} differs from peft's merge of the same adapter by up to "
                    f"{float(err.max()):.3g} (elementwise relative {rel:.3g}, over one {dtype} rounding). "
                    "The merge is wrong; nothing was written."
                )
        checked.append(name)
    # One tensor the adapter leaves alone must come through unchanged (the smallest: the check stays cheap).
    others = [n for n in base if n not in plan.targets and n not in plan.replaced]
    untouched = min(others, key=lambda n: base[n].info.nbytes, default=None)
    if untouched is not None:
        with safe_open(str(out_dir / weight_map[untouched]), framework="pt") as fh:
            got = fh.get_tensor(untouched)
        want = _read(base[untouched])
        if got.is_floating_point():
            want = want.to(got.dtype)
        if not bool((got == want).all()):
            raise MergeError(f"tensor {untouched}, which the adapter does not change, changed in the merge")
        checked.append(untouched)
    return {
        "kind": "weights",
        "checked": checked,
        "max_abs": worst_abs,
        "max_rel": worst_rel,
        "adapter_effect": effect,
        "tolerance": bound,
    }
