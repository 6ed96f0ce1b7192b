"""Shapes several built-in families share."""

from __future__ import annotations

from bedrock_ft.formats import FORMATS

__all__ = ["DECODER_TARGETS", "LLAMA_NATIVE", "MISTRAL_NATIVE"]

# Attention and MLP projections of Llama-style decoders: what "all linear layers" means for them.
DECODER_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

MISTRAL_NATIVE = FORMATS["mistral"]
LLAMA_NATIVE = FORMATS["llama"]
