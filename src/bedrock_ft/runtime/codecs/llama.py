"""The legacy native Llama body (models imported before 2025-11-11): ``prompt``, ``max_gen_len``,
``temperature``, ``top_p`` -> ``generation``, ``stop_reason`` and token counts. No stop sequences."""

from __future__ import annotations

from bedrock_ft.runtime.codecs._base import Codec
from bedrock_ft.runtime.codecs.bedrock_completion import BedrockCompletion

__all__ = ["LlamaNative"]


class LlamaNative(BedrockCompletion, body_format="llama"):
    """Read as BedrockCompletion is; it takes fewer settings (the table's entry) and no features."""

    add_features = Codec.add_features
