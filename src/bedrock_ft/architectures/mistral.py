"""Mistral (7B and the other dense Mistral models)."""

from __future__ import annotations

from bedrock_ft.architectures._common import DECODER_TARGETS, MISTRAL_NATIVE
from bedrock_ft.architectures._registry import Architecture, register_architecture

MISTRAL = register_architecture(
    Architecture(
        name="mistral",
        model_types=("mistral",),
        decoder_layers=("MistralDecoderLayer",),
        hf_architectures=("MistralForCausalLM",),
        description="Mistral 7B and other dense Mistral models.",
        native_format=MISTRAL_NATIVE,
        lora_target_modules=DECODER_TARGETS,
    )
)
