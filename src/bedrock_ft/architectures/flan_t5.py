"""Flan-T5 (encoder-decoder)."""

from __future__ import annotations

from bedrock_ft.architectures._registry import Architecture, register_architecture

FLAN_T5 = register_architecture(
    Architecture(
        name="flan_t5",
        model_types=("t5",),
        hf_architectures=("T5ForConditionalGeneration",),
        description="Flan-T5.",
        lora_target_modules=("q", "k", "v", "o", "wi_0", "wi_1", "wo"),
        encoder_decoder=True,
    )
)
