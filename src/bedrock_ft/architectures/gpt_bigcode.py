"""GPTBigCode (StarCoder and SantaCoder)."""

from __future__ import annotations

from bedrock_ft.architectures._registry import Architecture, register_architecture

GPT_BIGCODE = register_architecture(
    Architecture(
        name="gpt_bigcode",
        model_types=("gpt_bigcode",),
        decoder_layers=("GPTBigCodeBlock",),
        hf_architectures=("GPTBigCodeForCausalLM",),
        description="GPTBigCode: StarCoder, SantaCoder.",
        lora_target_modules=("c_attn", "c_proj", "c_fc"),
    )
)
