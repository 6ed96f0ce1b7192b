"""OpenAICompletion: ``prompt`` + ``max_tokens`` -> ``choices[0].text``, ``finish_reason``, ``usage``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bedrock_ft.runtime.codecs._base import (
    Codec,
    Decoded,
    dig,
    invocation_metrics,
    normalize_finish_reason,
    optional_int,
)

__all__ = ["OpenAICompletion", "openai_usage"]


def openai_usage(data: Mapping[str, Any]) -> tuple[int | None, int | None]:
    usage = data.get("usage")
    if isinstance(usage, Mapping):
        return optional_int(usage, "prompt_tokens"), optional_int(usage, "completion_tokens")
    return invocation_metrics(data)


def usage_only(data: Mapping[str, Any]) -> Decoded | None:
    """A stream's usage chunk, as OpenAI sends it when asked (``stream_options.include_usage``): no
    choices, only ``usage``. None for any other chunk."""
    if data.get("choices") == [] and isinstance(data.get("usage"), Mapping):
        tokens_in, tokens_out = openai_usage(data)
        return Decoded("", None, tokens_in, tokens_out)
    return None


class OpenAICompletion(Codec, body_format="OpenAICompletion"):
    def decode(self, data: Mapping[str, Any]) -> Decoded:
        text = dig(data, self.body_format.text_path, fmt=self.name)
        choice = dig(data, "choices[0]", fmt=self.name, kind=dict)
        tokens_in, tokens_out = openai_usage(data)
        return Decoded(text, normalize_finish_reason(choice.get("finish_reason")), tokens_in, tokens_out)

    def decode_chunk(self, data: Mapping[str, Any]) -> Decoded:
        if (usage := usage_only(data)) is not None:
            return usage
        return self.decode(data)
