"""The legacy native Llama body (models imported before 2025-11-11): ``prompt``, ``max_gen_len``,
``temperature``, ``top_p`` -> ``generation``, ``stop_reason`` and token counts. No stop sequences."""

from __future__ import annotations

from typing import ClassVar

from bedrock_ft.bedrock.codecs.bedrock_completion import BedrockCompletion

__all__ = ["LlamaNative"]


class LlamaNative(BedrockCompletion):
    name: ClassVar[str] = "llama"
    optional: ClassVar[dict[str, str]] = {"temperature": "temperature", "top_p": "top_p"}
