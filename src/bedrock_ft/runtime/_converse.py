"""The Converse API for imported models: request from OpenAI-style messages, answer from its response."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bedrock_ft.errors import MalformedResponseError, RequestValidationError
from bedrock_ft.runtime._config import GenerationParams
from bedrock_ft.runtime.codecs import Decoded, normalize_finish_reason
from bedrock_ft.runtime.codecs._base import dig, optional_int

__all__ = ["content_blocks", "converse_request", "decode_converse", "decode_converse_event"]

NAME = "Converse"


_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}


def content_blocks(content: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Converse content blocks (botocore's ``ContentBlock``) for a message's content: a text block, or,
    for OpenAI content parts, a text block per text part and an ``image`` block (format and bytes) per
    base64 data URL. Converse takes an image's bytes, not a link: an http(s) URL is refused."""
    if isinstance(content, str):
        return [{"text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            blocks.append({"text": part["text"]})
            continue
        url = str(part["image_url"]["url"])
        found = re.fullmatch(r"data:image/([a-z]+);base64,(.*)", url, re.DOTALL)
        if found is None or found[1] not in _IMAGE_FORMATS:
            raise RequestValidationError(
                f"converse(): an image goes to Converse as bytes: give a base64 data URL of a "
                f"{', '.join(sorted(set(_IMAGE_FORMATS.values())))} image, not {url[:40]!r}"
            )
        try:
            data = base64.b64decode(found[2], validate=True)
        except ValueError:
            raise RequestValidationError("converse(): an image's data URL is not valid base64") from None
        blocks.append({"image": {"format": _IMAGE_FORMATS[found[1]], "source": {"bytes": data}}})
    return blocks


def converse_request(
    messages: Sequence[Mapping[str, Any]], params: GenerationParams, system: str | None = None
) -> dict[str, Any]:
    """Converse's parameters: system messages go to ``system``, the rest become content blocks."""
    systems = [m["content"] for m in messages if m["role"] == "system"]
    if any(not isinstance(text, str) for text in systems):
        raise RequestValidationError(
            "converse(): a system message takes text only; put images in a user message"
        )
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
            {"role": m["role"], "content": content_blocks(m["content"])}
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
