"""The memory guard: estimate what a run needs before loading anything, and stop early if it can't fit.

The estimate is analytic, from ``config.json``: weights (4-bit linear layers at ~0.53 bytes per
parameter with double quantization, the rest in the compute dtype), the LoRA adapter with its
float32 AdamW state, and activations. With gradient checkpointing, activations are one saved hidden
state per layer plus one layer's working set; without it, every layer's working set. Logits are
not counted (trl computes the loss in chunks). It errs on the high side by a 15% margin, which is
the point: failing before a 10-minute load beats an out-of-memory error after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import TrainingError

if TYPE_CHECKING:
    from bedrock_ft.training._config import QLoRAConfig, TrainingConfig

__all__ = ["MemoryEstimate", "check_memory", "estimate_memory"]

GiB = 1 << 30
_MARGIN = 1.15
_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one device holds: with ``shards`` > 1 (FSDP), its share of the weights and adapter, plus
    the one layer it gathers whole at a time (``gathered``)."""

    weights: int
    adapter: int
    activations: int
    gathered: int = 0

    @property
    def total(self) -> int:
        return int((self.weights + self.adapter + self.activations + self.gathered) * _MARGIN)

    def describe(self) -> str:
        gathered = f", one gathered layer {self.gathered / GiB:.2f}" if self.gathered else ""
        return (
            f"~{self.total / GiB:.1f} GiB (weights {self.weights / GiB:.1f}, adapter+optimizer "
            f"{self.adapter / GiB:.2f}, activations {self.activations / GiB:.1f}{gathered}, +15% margin)"
        )


def _get(config: Mapping[str, Any], *keys: str, default: int | None = None) -> int:
    text = config.get("text_config")
    for source in (config, text if isinstance(text, Mapping) else {}):
        for key in keys:
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    if default is None:
        raise KeyError(keys[0])
    return default


def estimate_memory(
    model_config: Mapping[str, Any],
    qlora: QLoRAConfig,
    training: TrainingConfig,
    dtype_name: str,
    *,
    shards: int = 1,
) -> MemoryEstimate | None:
    """The estimate per device for a decoder-only transformer; None when config.json lacks the usual keys.

    ``shards``: the FSDP world size (weights, adapter and optimizer state are split across it); 1 for
    one device or DDP, where every rank holds everything.
    """
    try:
        hidden = _get(model_config, "hidden_size", "n_embd", "d_model")
        layers = _get(model_config, "num_hidden_layers", "n_layer", "num_layers")
        vocab = _get(model_config, "vocab_size")
        inter = _get(model_config, "intermediate_size", "n_inner", default=4 * hidden)
        heads = _get(model_config, "num_attention_heads", "n_head", default=max(1, hidden // 128))
        kv_heads = _get(model_config, "num_key_value_heads", default=heads)
        experts = _get(model_config, "num_local_experts", "num_experts", default=1)
    except KeyError:
        return None
    head_dim = _get(model_config, "head_dim", default=hidden // heads)
    attn = hidden * head_dim * (2 * heads + 2 * kv_heads)
    # Mixture of experts: every expert's weights are held, only the routed ones run per token.
    expert_inter = _get(model_config, "moe_intermediate_size", default=inter) if experts > 1 else inter
    shared = _get(model_config, "shared_expert_intermediate_size", default=0) if experts > 1 else 0
    top_k = _get(model_config, "num_experts_per_tok", default=2) if experts > 1 else 1
    mlp = 3 * hidden * (expert_inter * experts + shared)
    linear = layers * (attn + mlp)
    tied = bool(model_config.get("tie_word_embeddings", False))
    embed = vocab * hidden * (1 if tied else 2)
    width = _BYTES[dtype_name]
    per_linear = 0.53 if qlora.quantize else width
    weights = int(linear * per_linear + embed * width)

    # LoRA on every projection: r * (in + out) per module; fp32 weight + grad + two AdamW moments.
    per_layer = hidden * 4 + head_dim * (2 * heads + 2 * kv_heads) + 3 * (hidden + expert_inter) * experts
    if shared:
        per_layer += 3 * (hidden + shared)
    lora_params = layers * qlora.r * per_layer
    adapter = lora_params * 16

    tokens = training.per_device_batch_size * training.max_length
    # One layer's working set in the backward pass: attention inputs/outputs, q/k/v, MLP intermediates
    # (gate, up, act, product), norms and the LoRA inputs it saves, in the compute dtype.
    active_inter = expert_inter * top_k + shared
    layer_set = tokens * (10 * hidden + 4 * active_inter + 2 * head_dim * (heads + 2 * kv_heads)) * width
    if training.gradient_checkpointing:
        activations = layers * tokens * hidden * width + 2 * layer_set
    else:
        activations = layers * layer_set
    if shards == 1:
        return MemoryEstimate(weights=weights, adapter=adapter, activations=activations)
    gathered = int((attn + mlp) * per_linear)
    return MemoryEstimate(
        weights=weights // shards, adapter=adapter // shards, activations=activations, gathered=gathered
    )


def check_memory(estimate: MemoryEstimate | None, device: str, training: TrainingConfig) -> None:
    """Raise TrainingError naming what to lower when the estimate exceeds what the device has free."""
    if estimate is None or not training.memory_guard:
        return
    from bedrock_ft._system import available_memory

    free, what = available_memory(device)
    if estimate.total <= free:
        return
    lower = (
        f"lower per_device_batch_size (now {training.per_device_batch_size}; raise "
        f"gradient_accumulation_steps to keep the effective batch) or max_length (now {training.max_length})"
    )
    if not training.gradient_checkpointing:
        lower = "turn gradient_checkpointing on, or " + lower
    raise TrainingError(
        f"this run needs {estimate.describe()} but {device} has {free / GiB:.1f} GiB {what}. "
        f"{lower[0].upper()}{lower[1:]}; or set memory_guard=False if you know better."
    )
