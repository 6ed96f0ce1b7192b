"""The Converse API for imported models: request from OpenAI-style messages, answer from its response."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bedrock_ft.errors import MalformedResponseError
from bedrock_ft.runtime._config import GenerationParams
from bedrock_ft.runtime.codecs import Decoded, normalize_finish_reason
from bedrock_ft.runtime.codecs._base import dig, optional_int

__all__ = ["converse_request", "decode_converse", "decode_converse_event"]

NAME = "Converse"


def converse_request(
    messages: Sequence[Mapping[str, str]], params: GenerationParams, system: str | None = None
) -> dict[str, Any]:
    """Converse's parameters: system messages go to ``system``, the rest become content blocks."""
    systems = [m["content"] for m in messages if m["role"] == "system"]
    if system:
        systems.insert(0, system)
    inference: dict[str, Any] = {"maxTokens": params.max_tokens}
    if params.temperature is not None:
        inference["temperature"] = params.temperature
    if params.top_p is not None:
        inference["topP"] = params.top_p
    if params.stop:
        inference["stopSequences"] = list(params.stop)
    request: dict[str, Any] = {
        "messages": [
            {"role": m["role"], "content": [{"text": m["content"]}]}
            for m in messages
            if m["role"] != "system"
        ],
        "inferenceConfig": inference,
    }
    if systems:
        request["system"] = [{"text": text} for text in systems]
    extra = {k: v for k, v in (("top_k", params.top_k), ("seed", params.seed)) if v is not None}
    if extra:
        request["additionalModelRequestFields"] = extra
    return request


def decode_converse(response: Mapping[str, Any]) -> Decoded:
    blocks = dig(response, "output.message.content", fmt=NAME, kind=list)
    text = "".join(b["text"] for b in blocks if isinstance(b, Mapping) and isinstance(b.get("text"), str))
    usage: Mapping[str, Any] = response.get("usage") or {}
    if not isinstance(usage, Mapping):
        usage = {}
    return Decoded(
        text=text,
        finish_reason=normalize_finish_reason(response.get("stopReason")),
        input_tokens=optional_int(usage, "inputTokens"),
        output_tokens=optional_int(usage, "outputTokens"),
    )


_QUIET_EVENTS = ("messageStart", "contentBlockStart", "contentBlockStop")


def decode_converse_event(event: Any) -> tuple[Decoded, Mapping[str, Any]]:
    """One ConverseStream event: text from ``contentBlockDelta``, the stop reason from ``messageStop``,
    token counts from ``metadata``; the others carry nothing a completion needs."""
    if not isinstance(event, Mapping) or len(event) != 1:
        raise MalformedResponseError(f"{NAME}: unexpected stream event: {str(event)[:200]!r}")
    ((kind, data),) = event.items()
    if kind == "contentBlockDelta":
        delta = dig(event, "contentBlockDelta.delta", fmt=NAME, kind=Mapping)
        text = delta.get("text", "")
        return Decoded(text if isinstance(text, str) else ""), data
    if kind == "messageStop":
        return Decoded("", normalize_finish_reason(dig(event, "messageStop.stopReason", fmt=NAME))), data
    if kind == "metadata":
        usage = data.get("usage") if isinstance(data, Mapping) else None
        usage = usage if isinstance(usage, Mapping) else {}
        return Decoded(
            "", None, optional_int(usage, "inputTokens"), optional_int(usage, "outputTokens")
        ), data
    if kind in _QUIET_EVENTS:
        return Decoded(""), data
    raise MalformedResponseError(f"{NAME}: unexpected stream event {kind!r}: {str(event)[:200]!r}")
