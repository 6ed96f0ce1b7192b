"""Qwen2 and Qwen2.5 (text), Qwen2-VL and Qwen2.5-VL (vision)."""

from __future__ import annotations

from bedrock_ft.architectures._common import DECODER_TARGETS
from bedrock_ft.architectures._registry import Architecture, register_architecture

# Converse is not supported for Qwen2.5, Qwen2-VL or Qwen2.5-VL. Qwen2 and Qwen2.5 share model_type
# "qwen2" and can't be told apart from config.json, so Converse is off for the whole family.
QWEN2 = register_architecture(
    Architecture(
        name="qwen2",
        model_types=("qwen2",),
        decoder_layers=("Qwen2DecoderLayer",),
        hf_architectures=("Qwen2ForCausalLM",),
        description="Qwen2 and Qwen2.5.",
        supports_converse=False,
        lora_target_modules=DECODER_TARGETS,
    )
)

QWEN2_VL = register_architecture(
    Architecture(
        name="qwen2_vl",
        model_types=("qwen2_vl",),
        hf_architectures=("Qwen2VLForConditionalGeneration",),
        description="Qwen2-VL.",
        supports_converse=False,
        lora_target_modules=DECODER_TARGETS,
        multimodal=True,
    )
)

QWEN2_5_VL = register_architecture(
    Architecture(
        name="qwen2_5_vl",
        model_types=("qwen2_5_vl",),
        hf_architectures=("Qwen2_5_VLForConditionalGeneration",),
        description="Qwen2.5-VL.",
        supports_converse=False,
        lora_target_modules=DECODER_TARGETS,
        multimodal=True,
    )
)
