"""The features of models imported after 2025-11-11, in InvokeModel bodies: structured outputs
(``response_format``), log probabilities and tools (AWS's "Advanced API features for imported models";
the shapes are OpenAI's, which the formats follow). Parsing requests and shaping the answers' parts.

Image input is refused here: the local Bedrock serves text models only, and a model without vision
refuses image content.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from bedrock_ft.local._errors import ServiceError
from bedrock_ft.local.engine import TokenLogprob

__all__ = [
    "chat_logprobs",
    "completion_logprobs",
    "parse_logprobs",
    "parse_response_format",
    "parse_tools",
    "refuse_image",
    "split_tool_calls",
    "template_takes_tools",
    "tool_turn",
]

MAX_TOP_LOGPROBS = 20  # OpenAI's chat completions API
MAX_COMPLETION_LOGPROBS = 5  # OpenAI's completions API


def _invalid(message: str) -> ServiceError:
    return ServiceError("ValidationException", f"Malformed input request: {message}")


def parse_response_format(data: Mapping[str, Any], fmt_name: str) -> str | None:
    """The JSON Schema a body's ``response_format`` asks the output to match, as JSON text; None for no
    constraint. ``json_schema`` is read in OpenAI's shape (``{"name", "schema", "strict"}``) or, as AWS's
    BedrockCompletion example sends it, as the schema itself."""
    value = data.get("response_format")
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise _invalid("'response_format' must be an object with a 'type'")
    kind = value["type"]
    if kind == "text" and fmt_name != "BedrockCompletion":
        return None
    if kind == "json_object":
        return json.dumps({"type": "object"})
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not spec:
            raise _invalid("'response_format.json_schema' must be a non-empty object")
        schema = spec["schema"] if isinstance(spec.get("schema"), dict) else spec
        return json.dumps(schema)
    allowed = "json_object, json_schema" + ("" if fmt_name == "BedrockCompletion" else ", text")
    raise _invalid(f"'response_format.type' must be one of {allowed} for {fmt_name}, got {kind!r}")


def parse_logprobs(data: Mapping[str, Any], fmt_name: str, *, stream: bool) -> int | None:
    """How many alternatives per token a body asks log probabilities for (None: none).

    OpenAIChatCompletion: ``logprobs: true`` with ``top_logprobs`` 0-20; OpenAICompletion: ``logprobs``
    as the number of alternatives, 0-5 (OpenAI's two APIs)."""
    value = data.get("logprobs")
    top = data.get("top_logprobs")
    if fmt_name == "OpenAIChatCompletion":
        if value is not None and not isinstance(value, bool):
            raise _invalid(f"'logprobs' must be a boolean, got {value!r}")
        if top is not None:
            if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
                raise _invalid(
                    f"'top_logprobs' must be an integer between 0 and {MAX_TOP_LOGPROBS}, got {top!r}"
                )
            if not value:
                raise _invalid("'top_logprobs' needs 'logprobs': true")
        count = (top or 0) if value else None
    else:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COMPLETION_LOGPROBS
        ):
            raise _invalid(
                f"'logprobs' must be an integer between 0 and {MAX_COMPLETION_LOGPROBS}, got {value!r}"
            )
        count = value
    if count is not None and stream:
        raise _invalid("'logprobs' in a stream is not supported by the local Bedrock; use InvokeModel")
    return count


def parse_tools(data: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """The ``tools`` of a chat body, checked to be OpenAI function tools; ``tool_choice`` ``"none"``
    means none are offered. The model chooses whether to call one (``"auto"``): a ``tool_choice`` that
    forces a call (``"required"``, a named function) or ``parallel_tool_calls: false`` would need the
    output constrained to a call, which the local Bedrock doesn't do, so they are refused, not ignored."""
    tools = data.get("tools")
    choice = data.get("tool_choice")
    parallel = data.get("parallel_tool_calls")
    if tools is None:
        for key in ("tool_choice", "parallel_tool_calls"):
            if data.get(key) is not None:
                raise _invalid(f"'{key}' is only allowed when 'tools' are given")
        return ()
    if not isinstance(tools, list) or not tools:
        raise _invalid("'tools' must be a non-empty list")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise _invalid(f"tools[{index}] must be {{'type': 'function', 'function': {{'name': ...}}}}")
    if choice is not None and choice not in ("none", "auto"):
        if choice == "required" or isinstance(choice, dict):
            raise _invalid(
                f"'tool_choice' {choice!r} is not supported by the local Bedrock: it offers the tools and "
                "the model chooses ('auto'), or none are offered ('none')"
            )
        raise _invalid(f"'tool_choice' must be none, auto, required or a function, got {choice!r}")
    if parallel is not None and not isinstance(parallel, bool):
        raise _invalid(f"'parallel_tool_calls' must be a boolean, got {parallel!r}")
    if parallel is False:
        raise _invalid(
            "'parallel_tool_calls': false is not supported by the local Bedrock (the model may call "
            "several tools at once)"
        )
    return () if choice == "none" else tuple(tools)


def tool_turn(message: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A message's part in a tool-calling conversation (OpenAI's shape), checked, as chat templates take
    it: an assistant's ``tool_calls`` with each call's arguments as an object (transformers' convention,
    which vLLM follows too), or a tool message's ``tool_call_id``."""
    role = message.get("role")
    if role == "tool":
        if not isinstance(message.get("tool_call_id"), str):
            raise _invalid(f"{where}: a 'tool' message needs 'tool_call_id'")
        return {"tool_call_id": message["tool_call_id"]}
    if "tool_calls" not in message:
        return {}
    calls = message["tool_calls"]
    if role != "assistant" or not isinstance(calls, list) or not calls:
        raise _invalid(f"{where}.tool_calls: only an assistant message has them, as a non-empty list")
    out = []
    for number, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        arguments = function.get("arguments") if isinstance(function, dict) else None
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else None
        except ValueError:
            parsed = None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or parsed is None:
            raise _invalid(
                f"{where}.tool_calls[{number}] must be {{'id', 'type': 'function', 'function': {{'name', "
                "'arguments': '<JSON text>'}}}}"
            )
        out.append({**call, "function": {"name": function["name"], "arguments": parsed}})
    return {"tool_calls": out}


def template_takes_tools(template: str | None) -> bool:
    """True when a chat template renders a ``tools`` variable (Qwen2.5's, GPT-OSS's, Llama 3.1's do).
    Parsed as transformers parses templates (``loopcontrols``; trl's ``{% generation %}`` tags), so a
    template with ``{% break %}`` isn't taken for one that can't show tools."""
    if not template:
        return False
    from jinja2 import Environment, TemplateSyntaxError, meta
    from jinja2.ext import loopcontrols

    from bedrock_ft.chat_templates import strip_generation_tags

    try:
        parsed = Environment(extensions=[loopcontrols]).parse(strip_generation_tags(template))
    except TemplateSyntaxError:
        return False
    return "tools" in meta.find_undeclared_variables(parsed)


def refuse_image(where: str) -> ServiceError:
    """What a text-only model answers to image content."""
    return _invalid(
        f"{where}: image input needs a model with vision (Qwen2-VL, Qwen2.5-VL, Mllama); this model takes "
        "text only"
    )


_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def split_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The text outside tool calls, and the calls in OpenAI's ``tool_calls`` shape. A call is read as
    the chat templates that take ``tools`` ask models to write one (Qwen2.5's, Hermes'):
    ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``. A block that isn't such JSON stays text."""
    calls: list[dict[str, Any]] = []

    def take(found: re.Match[str]) -> str:
        try:
            call = json.loads(found.group(1))
        except ValueError:
            return found.group(0)
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return found.group(0)
        arguments = call.get("arguments", {})
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
        return ""

    rest = _TOOL_CALL.sub(take, text)
    return rest.strip(), calls


# --- answers --------------------------------------------------------------------------------------


def _bytes(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """``choices[].logprobs`` of a chat completion, in OpenAI's shape."""
    return {
        "content": [
            {
                "token": e.token,
                "logprob": e.logprob,
                "bytes": _bytes(e.token),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": _bytes(t)} for t, lp in e.top],
            }
            for e in entries
        ]
    }


def completion_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, Any]:
    """``choices[].logprobs`` of a completion, in OpenAI's (legacy) completions shape."""
    offsets, position = [], 0
    for e in entries:
        offsets.append(position)
        position += len(e.token)
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [dict(e.top) for e in entries],
        "text_offset": offsets,
    }
