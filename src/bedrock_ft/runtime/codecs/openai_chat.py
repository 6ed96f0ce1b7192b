"""OpenAIChatCompletion: ``messages`` + ``max_tokens`` -> ``choices[0].message.content``, ``usage``.

Bedrock renders the messages with the chat template in the model's ``tokenizer_config.json``; a model
imported without one can't take this format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bedrock_ft.runtime.codecs._base import Decoded, dig, normalize_finish_reason
from bedrock_ft.runtime.codecs.openai_completion import OpenAICompletion, openai_usage, usage_only

__all__ = ["OpenAIChatCompletion"]


class OpenAIChatCompletion(OpenAICompletion, body_format="OpenAIChatCompletion"):
    def decode_chunk(self, data: Mapping[str, Any]) -> Decoded:
        if (usage := usage_only(data)) is not None:
            return usage
        choice = dig(data, "choices[0]", fmt=self.name, kind=dict)
        delta = dig(data, "choices[0].delta", fmt=self.name, kind=dict)
        content = delta.get("content") or ""  # the first and last deltas may carry no content
        if not isinstance(content, str):
            dig(data, "choices[0].delta.content", fmt=self.name)  # raises, quoting the chunk
        tokens_in, tokens_out = openai_usage(data)
        return Decoded(content, normalize_finish_reason(choice.get("finish_reason")), tokens_in, tokens_out)
