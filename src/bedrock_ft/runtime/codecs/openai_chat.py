"""OpenAIChatCompletion: ``messages`` + ``max_tokens`` -> ``choices[0].message.content``, ``usage``.

Bedrock renders the messages with the chat template in the model's ``tokenizer_config.json``; a model
imported without one can't take this format. Models imported after 2025-11-11 also take
``response_format``, ``logprobs``/``top_logprobs``, ``tools``/``tool_choice`` (GPT-OSS) and image
parts (vision families), in OpenAI's chat completions shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bedrock_ft.runtime._features import Features
from bedrock_ft.runtime.codecs._base import Decoded, dig, normalize_finish_reason
from bedrock_ft.runtime.codecs._features import chat_logprobs, openai_response_format, tool_calls
from bedrock_ft.runtime.codecs.openai_completion import OpenAICompletion, openai_usage, usage_only

__all__ = ["OpenAIChatCompletion"]


class OpenAIChatCompletion(OpenAICompletion, body_format="OpenAIChatCompletion"):
    def add_features(self, body: dict[str, Any], features: Features) -> None:
        if features.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = features.logprobs
        if features.structured:
            body["response_format"] = openai_response_format(features)
        if features.tools:
            body["tools"] = [dict(tool) for tool in features.tools]
            if features.tool_choice is not None:
                body["tool_choice"] = features.tool_choice

    def decode(self, data: Mapping[str, Any]) -> Decoded:
        choices = data.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        message = first.get("message") if isinstance(first, Mapping) else None
        calls = tool_calls(message, fmt=self.name, data=data) if isinstance(message, Mapping) else ()
        if calls and isinstance(message, Mapping) and message.get("content") is None:
            text = ""  # a message that calls tools may have no content (OpenAI sends null)
        else:
            text = dig(data, self.body_format.text_path, fmt=self.name)
        choice = dig(data, "choices[0]", fmt=self.name, kind=dict)
        tokens_in, tokens_out = openai_usage(data)
        return Decoded(
            text,
            normalize_finish_reason(choice.get("finish_reason")),
            tokens_in,
            tokens_out,
            logprobs=chat_logprobs(choice, fmt=self.name, data=data),
            tool_calls=calls,
        )

    def decode_chunk(self, data: Mapping[str, Any]) -> Decoded:
        if (usage := usage_only(data)) is not None:
            return usage
        choice = dig(data, "choices[0]", fmt=self.name, kind=dict)
        delta = dig(data, "choices[0].delta", fmt=self.name, kind=dict)
        content = delta.get("content") or ""  # the first and last deltas may carry no content
        if not isinstance(content, str):
            dig(data, "choices[0].delta.content", fmt=self.name)  # raises, quoting the chunk
        tokens_in, tokens_out = openai_usage(data)
        return Decoded(
            content,
            normalize_finish_reason(choice.get("finish_reason")),
            tokens_in,
            tokens_out,
            logprobs=chat_logprobs(choice, fmt=self.name, data=data),
        )
