"""The legacy native Mistral body (models imported before 2025-11-11): ``prompt``, ``max_tokens``,
``temperature``, ``top_p``, ``top_k``, ``stop`` -> ``outputs[0].text`` and ``outputs[0].stop_reason``.

The body carries no token counts; they come from Bedrock's response headers, or from the
``amazon-bedrock-invocationMetrics`` of a stream's last chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bedrock_ft.runtime.codecs._base import Codec, Decoded, dig, invocation_metrics, normalize_finish_reason

__all__ = ["MistralNative"]


class MistralNative(Codec, body_format="mistral"):
    def decode(self, data: Mapping[str, Any]) -> Decoded:
        output = dig(data, "outputs[0]", fmt=self.name, kind=dict)
        text = dig(data, self.body_format.text_path, fmt=self.name)
        return Decoded(text=text, finish_reason=normalize_finish_reason(output.get("stop_reason")))

    def decode_chunk(self, data: Mapping[str, Any]) -> Decoded:
        decoded = self.decode(data)
        metrics_in, metrics_out = invocation_metrics(data)
        return Decoded(decoded.text, decoded.finish_reason, metrics_in, metrics_out)
