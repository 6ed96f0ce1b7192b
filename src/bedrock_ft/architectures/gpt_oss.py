"""GPT-OSS (mixture of experts)."""

from __future__ import annotations

from bedrock_ft.architectures._registry import Architecture, register_architecture
from bedrock_ft.formats import ApiFormat

GPT_OSS = register_architecture(
    Architecture(
        name="gpt_oss",
        model_types=("gpt_oss",),
        decoder_layers=("GptOssDecoderLayer",),
        hf_architectures=("GptOssForCausalLM",),
        description="gpt-oss-20b and gpt-oss-120b.",
        # Only the OpenAI formats, and no Converse: AWS's "Custom Model Import" guide (invoke formats
        # and Converse support tables, checked 2026-11-27).
        api_formats=(ApiFormat.OPENAI_COMPLETION, ApiFormat.OPENAI_CHAT_COMPLETION),
        supports_converse=False,
        # The experts are fused parameter tensors, not Linear layers: LoRA targets attention only.
        lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
    )
)
