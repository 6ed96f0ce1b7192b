"""One codec per InvokeModel body format, each in its own small module.

- :class:`BedrockCompletion`, :class:`OpenAICompletion`, :class:`OpenAIChatCompletion`: the formats
  every model imported after 2025-11-11 accepts;
- :class:`MistralNative`, :class:`LlamaNative`: the base family's own body, all a model imported
  earlier accepts.

A codec builds the request body from :class:`~bedrock_ft.runtime.GenerationParams`
(mapping names: ``max_tokens`` is ``max_gen_len`` in the Bedrock and Llama bodies) and reads responses
and stream chunks strictly: a body of the wrong shape raises
:class:`~bedrock_ft.errors.MalformedResponseError` quoting its start.
"""

from __future__ import annotations

from bedrock_ft.runtime.codecs._base import Codec, Decoded, normalize_finish_reason, parse_json, quote
from bedrock_ft.runtime.codecs.bedrock_completion import BedrockCompletion
from bedrock_ft.runtime.codecs.llama import LlamaNative
from bedrock_ft.runtime.codecs.mistral import MistralNative
from bedrock_ft.runtime.codecs.openai_chat import OpenAIChatCompletion
from bedrock_ft.runtime.codecs.openai_completion import OpenAICompletion

__all__ = [
    "CODECS",
    "BedrockCompletion",
    "Codec",
    "Decoded",
    "LlamaNative",
    "MistralNative",
    "OpenAIChatCompletion",
    "OpenAICompletion",
    "get_codec",
    "normalize_finish_reason",
    "parse_json",
    "quote",
]

CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        BedrockCompletion(),
        OpenAICompletion(),
        OpenAIChatCompletion(),
        MistralNative(),
        LlamaNative(),
    )
}
"""One codec per entry of :data:`bedrock_ft.formats.FORMATS` (a test checks that none is missing)."""


def get_codec(name: str) -> Codec:
    """The codec of a format name (KeyError for an unknown one)."""
    return CODECS[name]
