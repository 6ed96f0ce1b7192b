"""Llama 2, 3, 3.1, 3.2 and 3.3 (and Mllama, the vision variant)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bedrock_ft._findings import Finding, Severity
from bedrock_ft.architectures._common import DECODER_TARGETS, LLAMA_NATIVE
from bedrock_ft.architectures._registry import Architecture, register_architecture

# What Custom Model Import uses for every Llama 3 model, whatever config.json says.
LLAMA3_ROPE_OVERRIDE: dict[str, Any] = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
_LLAMA3_VOCAB = 128256
_LLAMA3_ROPE_THETA = 500000.0


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's settings: Mllama keeps them under ``text_config``."""
    text = config.get("text_config")
    return text if isinstance(text, Mapping) else config


def is_llama3(config: Mapping[str, Any]) -> bool:
    """Llama 3.x: a llama3 rope type, or Llama 3's tokenizer size or rope base."""
    config = _text_config(config)
    rope = config.get("rope_scaling")
    if isinstance(rope, Mapping) and (rope.get("rope_type") or rope.get("type")) == "llama3":
        return True
    return config.get("vocab_size") == _LLAMA3_VOCAB or config.get("rope_theta") == _LLAMA3_ROPE_THETA


def llama3_rope_override(config: Mapping[str, Any]) -> Iterator[Finding]:
    """Warn when Bedrock's fixed Llama 3 ``rope_scaling`` differs from the model's own."""
    if not is_llama3(config):
        return
    rope = _text_config(config).get("rope_scaling")
    current = dict(rope) if isinstance(rope, Mapping) else None
    if current is not None and all(
        _same(current.get(k, current.get("type") if k == "rope_type" else None), v)
        for k, v in LLAMA3_ROPE_OVERRIDE.items()
    ):
        return
    shown = {k: v for k, v in LLAMA3_ROPE_OVERRIDE.items() if k != "rope_type"}
    yield Finding(
        rule="llama3-rope-override",
        path="config.json",
        severity=Severity.WARNING,
        message=(
            f"Bedrock replaces rope_scaling {current!r} with {shown} for Llama 3 models. "
            "Positions are encoded differently than in training, so outputs (most of all on long "
            "prompts) can differ from local runs; evaluate after import."
        ),
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, float):
        return isinstance(a, int | float) and float(a) == b
    return bool(a == b)


LLAMA = register_architecture(
    Architecture(
        name="llama",
        model_types=("llama",),
        decoder_layers=("LlamaDecoderLayer",),
        hf_architectures=("LlamaForCausalLM",),
        description="Llama 2, Llama 3, 3.1, 3.2 and 3.3 (and Llama-architecture models such as SmolLM2).",
        native_format=LLAMA_NATIVE,
        lora_target_modules=DECODER_TARGETS,
        preflight_rules=(llama3_rope_override,),
    )
)

MLLAMA = register_architecture(
    Architecture(
        name="mllama",
        model_types=("mllama",),
        hf_architectures=("MllamaForConditionalGeneration",),
        description="Llama 3.2 Vision.",
        native_format=LLAMA_NATIVE,
        lora_target_modules=DECODER_TARGETS,
        multimodal=True,
        preflight_rules=(llama3_rope_override,),
    )
)
