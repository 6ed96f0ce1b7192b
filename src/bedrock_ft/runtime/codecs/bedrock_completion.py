"""BedrockCompletion: ``prompt`` + ``max_gen_len`` -> ``generation``, ``stop_reason`` and token counts.

The Llama-style body every model imported after 2025-11-11 accepts, whatever its family.
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

__all__ = ["BedrockCompletion"]


class BedrockCompletion(Codec, body_format="BedrockCompletion"):
    def add_features(self, body: dict[str, Any], features: Features) -> None:
        """``response_format`` only (AWS's guide: json_object and json_schema), with the schema itself as
        ``json_schema``, as the guide's BedrockCompletion example sends it."""
        other = [name for name in features.names() if name != "response_format"]
        if other:
            raise UnsupportedFormatError(
                f"the {self.name} format has no {', '.join(other)}: use OpenAICompletion (complete()) or "
                "OpenAIChatCompletion (chat()) with api_format="
            )
        body["response_format"] = (
            {"type": "json_object"}
            if features.json_object
            else {"type": "json_schema", "json_schema": dict(features.schema or {})}
        )

    def decode(self, data: Mapping[str, Any]) -> Decoded:
        return Decoded(
            text=dig(data, self.body_format.text_path, fmt=self.name),
            finish_reason=normalize_finish_reason(data.get("stop_reason")),
            input_tokens=optional_int(data, "prompt_token_count"),
            output_tokens=optional_int(data, "generation_token_count"),
        )

    def decode_chunk(self, data: Mapping[str, Any]) -> Decoded:
        text = dig(data, self.body_format.text_path, fmt=self.name)
        reason = data.get("stop_reason")
        metrics_in, metrics_out = invocation_metrics(data)
        return Decoded(
            text=text,
            finish_reason=normalize_finish_reason(reason),
            input_tokens=optional_int(data, "prompt_token_count") or metrics_in,
            output_tokens=(optional_int(data, "generation_token_count") if reason else None) or metrics_out,
        )
