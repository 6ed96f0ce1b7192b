"""GPT-OSS (mixture of experts)."""

from __future__ import annotations

from bedrock_ft.architectures._registry import Architecture, register_architecture

GPT_OSS = register_architecture(
    Architecture(
        name="gpt_oss",
        model_types=("gpt_oss",),
        decoder_layers=("GptOssDecoderLayer",),
        hf_architectures=("GptOssForCausalLM",),
        description="gpt-oss-20b and gpt-oss-120b.",
        supports_converse=False,
        # The experts are fused parameter tensors, not Linear layers: LoRA targets attention only.
        lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
    )
)
