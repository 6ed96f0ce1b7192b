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

__all__ = ["KeptLayers", "MemoryEstimate", "check_memory", "estimate_memory", "kept_layers"]

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
    kept: int = 0,
) -> MemoryEstimate | None:
    """The estimate per device for a decoder-only transformer; None when config.json lacks the usual keys.

    ``shards``: the FSDP world size (weights, adapter and optimizer state are split across it); 1 for
    one device or DDP, where every rank holds everything. ``kept``: layers that keep their activations
    under gradient checkpointing (see :func:`kept_layers`).
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
        kept = min(kept, layers)
        activations = (layers - kept) * tokens * hidden * width + (2 + kept) * layer_set
    else:
        activations = layers * layer_set
    if shards == 1:
        return MemoryEstimate(weights=weights, adapter=adapter, activations=activations)
    gathered = int((attn + mlp) * per_linear)
    return MemoryEstimate(
        weights=weights // shards, adapter=adapter // shards, activations=activations, gathered=gathered
    )


def check_memory(
    estimate: MemoryEstimate | None,
    device: str,
    training: TrainingConfig,
    available: tuple[int, str] | None = None,
) -> None:
    """Raise TrainingError naming what to lower when the estimate exceeds what the device has free.
    ``available``: the device's free bytes and what they are, when the caller has read them already."""
    if estimate is None or not training.memory_guard:
        return
    from bedrock_ft._system import available_memory

    free, what = available or available_memory(device)
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


@dataclass(frozen=True)
class KeptLayers:
    """The last ``count`` decoder layers run without gradient checkpointing; ``line`` says why (empty
    when there is nothing to say)."""

    count: int
    line: str = ""


_LOGIT_BYTES = 10  # a plain LM head's logits per token and vocabulary entry: bf16, their fp32 copy, its grad


def kept_layers(
    model_config: Mapping[str, Any],
    qlora: QLoRAConfig,
    training: TrainingConfig,
    dtype_name: str,
    device: str,
    *,
    free: int | None = None,
) -> KeptLayers:
    """How many of the last layers keep their activations instead of recomputing them in the backward.

    ``uncheckpointed_layers="auto"`` (on a CUDA GPU; 0 elsewhere): as many as the memory the chunked LM
    head saves pays for. A plain transformers step holds the whole logits (tokens x vocabulary, in bf16,
    then float32, and their gradient) at its peak; bedrock-ft's loss never does, and spends that much on
    kept layers instead, so its peak stays under a plain step's. The last layer comes on top: the
    backward recomputes it first, at the peak that is there anyway. Each kept layer spares one layer's
    forward recomputation (about 1/3 of its forward and backward time). ``free``: the device's free
    bytes; auto keeps no more than fit in them by the memory estimate.
    """
    setting = training.uncheckpointed_layers
    if not training.gradient_checkpointing or setting == 0:
        return KeptLayers(0)
    try:
        layers = _get(model_config, "num_hidden_layers", "n_layer", "num_layers")
    except KeyError:
        layers = None
    if setting != "auto":
        count = min(int(setting), layers) if layers else int(setting)
        which = "the last layer keeps its" if count == 1 else f"the last {count} layers keep their"
        return KeptLayers(
            count, f"gradient checkpointing: {which} activations (uncheckpointed_layers={setting})"
        )
    if device != "cuda" or layers is None:
        return KeptLayers(0)
    per_layer = _layer_bytes(model_config, training, dtype_name)
    vocab = _get(model_config, "vocab_size", default=0)
    if per_layer is None or not vocab:
        return KeptLayers(0)
    logits = training.per_device_batch_size * training.max_length * vocab * _LOGIT_BYTES
    count = min(layers, 1 + logits // per_layer)
    if free is not None:
        none = estimate_memory(model_config, qlora, training, dtype_name)
        one = estimate_memory(model_config, qlora, training, dtype_name, kept=1)
        if none is not None and one is not None and one.total > none.total:
            count = min(count, max(0, (free - none.total) // (one.total - none.total)))
    if count == 0:
        return KeptLayers(0)
    extra = f", and {count - 1} more of ~{per_layer / GiB:.1f} GiB each" if count > 1 else ""
    return KeptLayers(
        count,
        f"gradient checkpointing: the last {count} of {layers} layers keep their activations instead of "
        f"recomputing them (uncheckpointed_layers=auto: the top layer{extra}, within the "
        f"{logits / GiB:.1f} GiB a plain LM head's logits would take)",
    )


def _layer_bytes(model_config: Mapping[str, Any], training: TrainingConfig, dtype_name: str) -> int | None:
    """What one decoder layer saves for its backward when not checkpointed, with the fused LoRA layers,
    fused norms and SwiGLU and varlen attention: about eight hidden-sized tensors (norm inputs and
    outputs, q, the attention output, the residuals), k and v, and three MLP-sized ones (gate, up and
    their product)."""
    try:
        hidden = _get(model_config, "hidden_size", "n_embd", "d_model")
        inter = _get(model_config, "intermediate_size", "n_inner", default=4 * hidden)
        heads = _get(model_config, "num_attention_heads", "n_head", default=max(1, hidden // 128))
        kv_heads = _get(model_config, "num_key_value_heads", default=heads)
    except KeyError:
        return None
    experts = _get(model_config, "num_local_experts", "num_experts", default=1)
    if experts > 1:
        inter = _get(model_config, "moe_intermediate_size", default=inter) * _get(
            model_config, "num_experts_per_tok", default=2
        )
    head_dim = _get(model_config, "head_dim", default=hidden // heads)
    tokens = training.per_device_batch_size * training.max_length
    return tokens * (8 * hidden + 2 * kv_heads * head_dim + 3 * inter) * _BYTES[dtype_name]
