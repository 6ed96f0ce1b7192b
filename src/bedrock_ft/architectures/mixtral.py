"""Mixtral (sparse mixture of experts)."""

from __future__ import annotations

from bedrock_ft.architectures._common import MISTRAL_NATIVE
from bedrock_ft.architectures._registry import Architecture, register_architecture

MIXTRAL = register_architecture(
    Architecture(
        name="mixtral",
        model_types=("mixtral",),
        decoder_layers=("MixtralDecoderLayer",),
        hf_architectures=("MixtralForCausalLM",),
        description="Mixtral 8x7B and 8x22B.",
        native_format=MISTRAL_NATIVE,
        # Attention plus each expert's w1/w2/w3; the router ('gate') stays frozen.
        lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3"),
    )
)
