"""OpenAICompletion: ``prompt`` + ``max_tokens`` -> ``choices[0].text``, ``finish_reason``, ``usage``.

Also ``logprobs`` (the number of alternatives per token, at most 5: OpenAI's completions API) and
``response_format``, for models imported after 2025-11-11.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bedrock_ft.errors import UnsupportedFormatError
from bedrock_ft.runtime._features import Features
from bedrock_ft.runtime.codecs._base import (
    Codec,
    Decoded,
    dig,
    invocation_metrics,
    normalize_finish_reason,
    optional_int,
)
from bedrock_ft.runtime.codecs._features import completion_logprobs, openai_response_format

__all__ = ["OpenAICompletion", "openai_usage"]

MAX_COMPLETION_LOGPROBS = 5


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
    def add_features(self, body: dict[str, Any], features: Features) -> None:
        if features.tools:
            raise UnsupportedFormatError(
                f"the {self.name} format has no tools: offer them with chat() in OpenAIChatCompletion "
                "(api_format='OpenAIChatCompletion')"
            )
        if features.logprobs is not None:
            if features.logprobs > MAX_COMPLETION_LOGPROBS:
                raise UnsupportedFormatError(
                    f"the {self.name} format returns at most {MAX_COMPLETION_LOGPROBS} alternatives a "
                    f"token (logprobs={features.logprobs}); OpenAIChatCompletion returns up to 20"
                )
            body["logprobs"] = features.logprobs
        if features.structured:
            body["response_format"] = openai_response_format(features)

    def decode(self, data: Mapping[str, Any]) -> Decoded:
        text = dig(data, self.body_format.text_path, fmt=self.name)
        choice = dig(data, "choices[0]", fmt=self.name, kind=dict)
        tokens_in, tokens_out = openai_usage(data)
        return Decoded(
            text,
            normalize_finish_reason(choice.get("finish_reason")),
            tokens_in,
            tokens_out,
            logprobs=completion_logprobs(choice, fmt=self.name, data=data),
        )

    def decode_chunk(self, data: Mapping[str, Any]) -> Decoded:
        if (usage := usage_only(data)) is not None:
            return usage
        return self.decode(data)
