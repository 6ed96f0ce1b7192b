"""Qwen3, dense and mixture of experts."""

from __future__ import annotations

from bedrock_ft.architectures._common import DECODER_TARGETS
from bedrock_ft.architectures._registry import Architecture, register_architecture

QWEN3 = register_architecture(
    Architecture(
        name="qwen3",
        model_types=("qwen3",),
        decoder_layers=("Qwen3DecoderLayer",),
        hf_architectures=("Qwen3ForCausalLM",),
        description="Qwen3 dense models.",
        # Converse: the guide's table lists only Qwen2.5, Qwen2-VL, Qwen2.5-VL and GPT-OSS as unsupported,
        # but AWS's Qwen3 Custom Model Import sample (January 2026) says Converse is not supported for
        # Qwen3. The sources disagree; the cautious one wins: InvokeModel only.
        supports_converse=False,
        lora_target_modules=DECODER_TARGETS,
    )
)

QWEN3_MOE = register_architecture(
    Architecture(
        name="qwen3_moe",
        model_types=("qwen3_moe",),
        decoder_layers=("Qwen3MoeDecoderLayer",),
        hf_architectures=("Qwen3MoeForCausalLM",),
        description="Qwen3 mixture-of-experts models.",
        supports_converse=False,  # as Qwen3 dense: AWS's Qwen3 sample (January 2026)
        # Each expert's gate/up/down projections are Linear layers; the router ('mlp.gate') stays frozen.
        lora_target_modules=DECODER_TARGETS,
    )
)
