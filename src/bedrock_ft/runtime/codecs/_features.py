"""The features of models imported after 2025-11-11 in OpenAI's shapes, which the OpenAI formats
follow: ``response_format``, log probabilities and tool calls, in requests and in responses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bedrock_ft.errors import MalformedResponseError
from bedrock_ft.runtime._features import Features
from bedrock_ft.runtime._results import TokenLogprob, ToolCall
from bedrock_ft.runtime.codecs._base import quote

__all__ = ["chat_logprobs", "completion_logprobs", "openai_response_format", "tool_calls"]


def openai_response_format(features: Features) -> dict[str, Any]:
    """OpenAI's ``response_format``: ``json_object``, or ``json_schema`` with a name and the schema."""
    if features.json_object:
        return {"type": "json_object"}
    name = re.sub(r"[^A-Za-z0-9_-]", "_", features.schema_name)[:64] or "response"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(features.schema or {})}}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def chat_logprobs(
    choice: Mapping[str, Any], *, fmt: str, data: Mapping[str, Any]
) -> tuple[TokenLogprob, ...] | None:
    """``choices[0].logprobs.content`` (OpenAI's chat shape), or None where the choice has none."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, Mapping) or logprobs.get("content") is None:
        return None
    entries = logprobs["content"]
    out = []
    for entry in entries if isinstance(entries, list) else [entries]:
        if (
            not isinstance(entry, Mapping)
            or not isinstance(entry.get("token"), str)
            or not _number(entry.get("logprob"))
        ):
            raise MalformedResponseError(
                f"{fmt}: a logprobs.content entry is not {{token, logprob}}: {quote(data)}"
            )
        top = tuple(
            (str(t.get("token")), float(t["logprob"]))
            for t in entry.get("top_logprobs") or ()
            if isinstance(t, Mapping) and _number(t.get("logprob"))
        )
        out.append(TokenLogprob(entry["token"], float(entry["logprob"]), top))
    return tuple(out)


def completion_logprobs(
    choice: Mapping[str, Any], *, fmt: str, data: Mapping[str, Any]
) -> tuple[TokenLogprob, ...] | None:
    """``choices[0].logprobs`` in OpenAI's completions shape (``tokens``, ``token_logprobs``,
    ``top_logprobs``), or None where the choice has none."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, Mapping):
        return None
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    tops = logprobs.get("top_logprobs") or []
    if (
        not isinstance(tokens, list)
        or not isinstance(values, list)
        or len(tokens) != len(values)
        or not all(isinstance(t, str) for t in tokens)
    ):
        raise MalformedResponseError(f"{fmt}: logprobs should hold tokens and token_logprobs: {quote(data)}")
    out = []
    for index, (token, value) in enumerate(zip(tokens, values, strict=True)):
        top = tops[index] if index < len(tops) and isinstance(tops[index], Mapping) else {}
        pairs = sorted(((str(t), float(v)) for t, v in top.items() if _number(v)), key=lambda p: -p[1])
        out.append(TokenLogprob(token, float(value) if _number(value) else float("-inf"), tuple(pairs)))
    return tuple(out)


def tool_calls(message: Mapping[str, Any], *, fmt: str, data: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    """``message.tool_calls`` (OpenAI's chat shape) as :class:`ToolCall`\\ s."""
    calls = message.get("tool_calls")
    if not calls:
        return ()
    if not isinstance(calls, list):
        raise MalformedResponseError(f"{fmt}: message.tool_calls should be a list: {quote(data)}")
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise MalformedResponseError(f"{fmt}: a tool call has no function name: {quote(data)}")
        arguments = function.get("arguments")
        out.append(
            ToolCall(
                str(call.get("id") or ""), function["name"], arguments if isinstance(arguments, str) else "{}"
            )
        )
    return tuple(out)
