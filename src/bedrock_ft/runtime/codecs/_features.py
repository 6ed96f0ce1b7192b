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
    if logprobs is None:
        return None
    if not isinstance(logprobs, Mapping):
        raise MalformedResponseError(f"{fmt}: logprobs should be an object with content: {quote(data)}")
    entries = logprobs.get("content")
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise MalformedResponseError(f"{fmt}: logprobs.content should be a list: {quote(data)}")
    return tuple(_chat_entry(entry, fmt=fmt, data=data) for entry in entries)


def _chat_entry(entry: Any, *, fmt: str, data: Mapping[str, Any]) -> TokenLogprob:
    if not _pair(entry):
        raise MalformedResponseError(
            f"{fmt}: a logprobs.content entry is not {{token, logprob}}: {quote(data)}"
        )
    tops = entry.get("top_logprobs") or []
    if not isinstance(tops, list) or not all(_pair(t) for t in tops):
        raise MalformedResponseError(
            f"{fmt}: a logprobs.content entry's top_logprobs is not a list of {{token, logprob}}: "
            f"{quote(data)}"
        )
    top = tuple((str(t["token"]), float(t["logprob"])) for t in tops)
    return TokenLogprob(entry["token"], float(entry["logprob"]), top)


def _pair(entry: Any) -> bool:
    return (
        isinstance(entry, Mapping) and isinstance(entry.get("token"), str) and _number(entry.get("logprob"))
    )


def completion_logprobs(
    choice: Mapping[str, Any], *, fmt: str, data: Mapping[str, Any]
) -> tuple[TokenLogprob, ...] | None:
    """``choices[0].logprobs`` in OpenAI's completions shape (``tokens``, ``token_logprobs``,
    ``top_logprobs``), or None where the choice has none."""
    logprobs = choice.get("logprobs")
    if logprobs is None:
        return None
    tokens = logprobs.get("tokens") if isinstance(logprobs, Mapping) else None
    values = logprobs.get("token_logprobs") if isinstance(logprobs, Mapping) else None
    if (
        not isinstance(tokens, list)
        or not isinstance(values, list)
        or len(tokens) != len(values)
        or not all(isinstance(t, str) for t in tokens)
        or not all(_number(v) for v in values)
    ):
        raise MalformedResponseError(
            f"{fmt}: logprobs should hold tokens and token_logprobs (numbers), one each: {quote(data)}"
        )
    tops = logprobs.get("top_logprobs") or []
    if (
        not isinstance(tops, list)
        or (tops and len(tops) != len(tokens))
        or not all(
            top is None or (isinstance(top, Mapping) and all(_number(v) for v in top.values()))
            for top in tops
        )
    ):
        raise MalformedResponseError(
            f"{fmt}: logprobs.top_logprobs should hold one {{token: logprob}} per token: {quote(data)}"
        )
    out = []
    for index, (token, value) in enumerate(zip(tokens, values, strict=True)):
        top = (tops[index] if tops else None) or {}
        pairs = sorted(((str(t), float(v)) for t, v in top.items()), key=lambda p: -p[1])
        out.append(TokenLogprob(token, float(value), tuple(pairs)))
    return tuple(out)


def tool_calls(message: Mapping[str, Any], *, fmt: str, data: Mapping[str, Any]) -> tuple[ToolCall, ...]:
    """``message.tool_calls`` (OpenAI's chat shape) as :class:`ToolCall`\\ s; a call without a function
    name, or whose arguments aren't JSON text, is a :class:`MalformedResponseError` quoting the body."""
    calls = message.get("tool_calls")
    if not calls:
        return ()
    if not isinstance(calls, list):
        raise MalformedResponseError(f"{fmt}: message.tool_calls should be a list: {quote(data)}")
    out = []
    for index, call in enumerate(calls):
        where = f"{fmt}: message.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise MalformedResponseError(f"{where}: a tool call has no function name: {quote(data)}")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            raise MalformedResponseError(
                f"{where}.function.arguments should be JSON text (a string), got "
                f"{type(arguments).__name__}: {quote(data)}"
            )
        call_id = call.get("id")
        if not isinstance(call_id, str):
            raise MalformedResponseError(f"{where}.id should be a string: {quote(data)}")
        out.append(ToolCall(call_id, function["name"], arguments))
    return tuple(out)
