"""Shapes several built-in families share."""

from __future__ import annotations

from bedrock_ft.architectures._registry import NativeFormat

__all__ = ["DECODER_TARGETS", "LLAMA_NATIVE", "MISTRAL_NATIVE"]

# Attention and MLP projections of Llama-style decoders: what "all linear layers" means for them.
DECODER_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

MISTRAL_NATIVE = NativeFormat(
    name="mistral",
    max_tokens_param="max_tokens",
    request_params=("prompt", "max_tokens", "temperature", "top_p", "top_k", "stop"),
    text_path="outputs[0].text",
    stop_reason_path="outputs[0].stop_reason",
)

LLAMA_NATIVE = NativeFormat(
    name="llama",
    max_tokens_param="max_gen_len",
    request_params=("prompt", "max_gen_len", "temperature", "top_p"),
    text_path="generation",
    stop_reason_path="stop_reason",
)
