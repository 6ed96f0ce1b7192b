"""InvokeModel bodies of imported models: parse a request, shape a response or a stream chunk.

Models imported after 2025-11-11 accept three formats, told apart by their keys:

- OpenAIChatCompletion: ``messages``;
- OpenAICompletion: ``prompt`` with ``max_tokens`` (or another OpenAI-only key);
- BedrockCompletion: ``prompt``, optionally ``max_gen_len``.

Models imported as "legacy" accept only their family's native body (Mistral's or Llama's). Every
parameter is checked; an unknown one or one out of range is a ``ValidationException`` naming it. The
keys, token caps and defaults of each format come from :data:`bedrock_ft.formats.FORMATS`, the table
the client's codecs are built from.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bedrock_ft.formats import FORMATS, NATIVE_FORMATS, BodyFormat
from bedrock_ft.local import _features
from bedrock_ft.local._errors import ServiceError
from bedrock_ft.local.engine import Delta, SamplingParams

__all__ = ["InvokeRequest", "parse_invoke_body", "response_body", "stream_chunks"]

# Keys only an OpenAICompletion body has (BedrockCompletion has none of its own but max_gen_len).
_OPENAI_ONLY = FORMATS["OpenAICompletion"].accepted_keys - FORMATS["BedrockCompletion"].accepted_keys


@dataclass(frozen=True)
class InvokeRequest:
    format: BodyFormat
    params: SamplingParams
    prompt: str | None = None
    messages: tuple[dict[str, Any], ...] = ()
    include_usage: bool = True
    usage_chunk: bool = False
    """``stream_options.include_usage: true``: usage comes in a chunk of its own with no choices, as
    OpenAI's streaming sends it (otherwise on the last chunk)."""
    tools: tuple[dict[str, Any], ...] = ()
    """OpenAI function tools offered to a chat (rendered by the model's chat template)."""


def _invalid(message: str) -> ServiceError:
    return ServiceError("ValidationException", f"Malformed input request: {message}")


def parse_invoke_body(
    body: bytes,
    invoke_format: str,
    *,
    max_tokens_limit: int,
    stream: bool,
    api_formats: tuple[str, ...] | None = None,
) -> InvokeRequest:
    """Parse and check an InvokeModel body for a model whose format is ``invoke_format``; ``api_formats``
    (the family's formats, for a model imported after 2025-11-11) narrows what a body may be read as."""
    try:
        data = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"the body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _invalid("the body must be a JSON object")
    fmt = _format_of(data, invoke_format, api_formats)
    unknown = sorted(set(data) - fmt.accepted_keys)
    if unknown:
        allowed = ", ".join(sorted(fmt.accepted_keys))
        raise _invalid(
            f"unknown parameter(s) {', '.join(unknown)} for the {fmt.label} format; allowed: {allowed}"
        )
    params = _sampling(data, fmt, max_tokens_limit)
    if not fmt.legacy:
        params = _with(
            params,
            json_schema=_features.parse_response_format(data, fmt.name),
            logprobs=_features.parse_logprobs(data, fmt.name, stream=stream)
            if "logprobs" in fmt.extra_keys
            else None,
        )
    if data.get("stream") and not stream:
        raise _invalid("'stream': true needs InvokeModelWithResponseStream")
    include_usage, usage_chunk = True, False
    if "stream_options" in data:
        options = data["stream_options"]
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise _invalid("'stream_options' must be an object with only 'include_usage'")
        include_usage = bool(options.get("include_usage", True))
        usage_chunk = options.get("include_usage") is True
    if fmt.takes_messages:
        messages = _messages(data["messages"])
        # The rendered chat template carries its own special tokens.
        chat_params = _with(params, add_special_tokens=False)
        tools = _features.parse_tools(data)
        if tools and stream:
            raise _invalid("'tools' in a stream is not supported by the local Bedrock; use InvokeModel")
        return InvokeRequest(
            fmt,
            chat_params,
            messages=messages,
            include_usage=include_usage,
            usage_chunk=usage_chunk,
            tools=tools,
        )
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _invalid("'prompt' must be a non-empty string")
    return InvokeRequest(fmt, params, prompt=prompt, include_usage=include_usage, usage_chunk=usage_chunk)


def _format_of(
    data: Mapping[str, Any], invoke_format: str, api_formats: tuple[str, ...] | None
) -> BodyFormat:
    if invoke_format in NATIVE_FORMATS:
        if "messages" in data:
            raise _invalid(f"this model was imported with the {invoke_format} native format; send 'prompt'")
        return FORMATS[invoke_format]
    if "messages" in data:
        if "prompt" in data:
            raise _invalid("send either 'prompt' or 'messages', not both")
        return FORMATS["OpenAIChatCompletion"]
    if "prompt" not in data:
        raise _invalid("the body needs 'prompt' (a completion) or 'messages' (a chat)")
    if api_formats is not None and "BedrockCompletion" not in api_formats:
        # GPT-OSS takes only the OpenAI formats (the guide): a prompt is an OpenAI completion.
        if "max_gen_len" in data:
            raise _invalid(
                f"this model takes only the {' and '.join(api_formats)} formats, not BedrockCompletion: "
                "send 'max_tokens', not 'max_gen_len'"
            )
        return FORMATS["OpenAICompletion"]
    if "max_gen_len" in data or not set(data) & _OPENAI_ONLY:
        return FORMATS["BedrockCompletion"]
    return FORMATS["OpenAICompletion"]


def _number(
    data: Mapping[str, Any], key: str, low: float, high: float, *, low_open: bool = False
) -> float | None:
    if key not in data or data[key] is None:
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(f"'{key}' must be a number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise _invalid(f"'{key}' must be in {bracket}{low:g}, {high:g}], got {value!r}")
    return float(value)


def _integer(data: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    if key not in data or data[key] is None:
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"'{key}' must be an integer, got {value!r}")
    if value < low or value > high:
        raise _invalid(f"'{key}' must be between {low} and {high}, got {value}")
    return value


def _sampling(data: Mapping[str, Any], fmt: BodyFormat, limit: int) -> SamplingParams:
    default_max, default_temperature, default_top_p = fmt.defaults
    max_new = _integer(data, fmt.max_tokens_key, 1, limit)
    if "max_completion_tokens" in fmt.extra_keys and max_new is None:
        max_new = _integer(data, "max_completion_tokens", 1, limit)
    temperature = _number(data, "temperature", 0.0, 2.0)
    top_p = _number(data, "top_p", 0.0, 1.0, low_open=True)
    top_k = _integer(data, "top_k", -1, 100_000)
    seed = _integer(data, "seed", 0, 2**63 - 1)
    n = _integer(data, "n", 1, 128)
    if n is not None and n != 1:
        raise _invalid("'n' other than 1 is not supported by the local Bedrock")
    for key in ("presence_penalty", "frequency_penalty"):
        if _number(data, key, -2.0, 2.0):
            raise _invalid(f"'{key}' is not supported by the local Bedrock (only 0)")
    if data.get("echo"):
        raise _invalid("'echo' is not supported by the local Bedrock")
    return SamplingParams(
        max_new_tokens=max_new if max_new is not None else min(default_max, limit),
        temperature=default_temperature if temperature is None else temperature,
        top_p=default_top_p if top_p is None else top_p,
        top_k=max(top_k or 0, 0),
        stop=_stops(data.get("stop")),
        seed=seed,
    )


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise _invalid("'stop' must be a non-empty string or a list of them")
    if len(value) > 16:
        raise _invalid("'stop' takes at most 16 sequences")
    return tuple(value)


def _messages(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not value:
        raise _invalid("'messages' must be a non-empty list")
    out = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid(f"{where} must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise _invalid(f"{where}.role must be system, user, assistant or tool, got {role!r}")
        content = message.get("content")
        extra = _features.tool_turn(message, where)  # tool_calls of an assistant, tool_call_id of a tool
        if content is None and "tool_calls" in extra:
            content = ""
        if isinstance(content, list):  # OpenAI content parts: text only here
            texts = []
            for number, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "image_url":
                    raise _features.refuse_image(f"{where}.content[{number}]")
                if (
                    not isinstance(part, dict)
                    or part.get("type") != "text"
                    or not isinstance(part.get("text"), str)
                ):
                    raise _invalid(f"{where}.content: only text and image_url parts are accepted")
                texts.append(part["text"])
            content = "".join(texts)
        if not isinstance(content, str):
            raise _invalid(f"{where}.content must be a string")
        out.append({"role": role, "content": content, **extra})
    return tuple(out)


def _with(params: SamplingParams, **changes: Any) -> SamplingParams:
    from dataclasses import replace

    return replace(params, **changes)


# --- responses ------------------------------------------------------------------------------------


def _usage(last: Delta) -> dict[str, int]:
    return {
        "prompt_tokens": last.prompt_tokens,
        "completion_tokens": last.completion_tokens,
        "total_tokens": last.prompt_tokens + last.completion_tokens,
    }


def response_body(request: InvokeRequest, text: str, last: Delta, model_arn: str) -> dict[str, Any]:
    """The whole-response body for ``request``'s format."""
    reason: str = last.finish_reason or "stop"
    name = request.format.name
    if name in ("BedrockCompletion", "llama"):
        return {
            "generation": text,
            "prompt_token_count": last.prompt_tokens,
            "generation_token_count": last.completion_tokens,
            "stop_reason": reason,
        }
    if name == "mistral":
        return {"outputs": [{"text": text, "stop_reason": reason}]}
    created = int(time.time())
    if name == "OpenAICompletion":
        logprobs = _features.completion_logprobs(last.logprobs) if last.logprobs is not None else None
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": reason}
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": created,
            "model": model_arn,
            "choices": [choice],
            "usage": _usage(last),
        }
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if request.tools:
        content, calls = _features.split_tool_calls(text)
        if calls:
            message = {"role": "assistant", "content": content or None, "tool_calls": calls}
            reason = "tool_calls"
    logprobs = _features.chat_logprobs(last.logprobs) if last.logprobs is not None else None
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": created,
        "model": model_arn,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": reason}],
        "usage": _usage(last),
    }


def stream_chunks(
    request: InvokeRequest, deltas: Iterable[Delta], model_arn: str, *, started: float
) -> Iterator[dict[str, Any]]:
    """One JSON chunk per delta, as InvokeModelWithResponseStream sends them; the last one carries
    the stop reason, token counts and ``amazon-bedrock-invocationMetrics``."""
    name = request.format.name
    ident = f"{'chatcmpl' if request.format.takes_messages else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    first_byte: float | None = None
    generated = 0
    for delta in deltas:
        if first_byte is None:
            first_byte = time.perf_counter()
        last = delta.finish_reason is not None
        reason = delta.finish_reason
        if not last:
            generated += 1
        chunk: dict[str, Any]
        if name in ("BedrockCompletion", "llama"):
            chunk = {
                "generation": delta.text,
                "prompt_token_count": delta.prompt_tokens if last else None,
                "generation_token_count": delta.completion_tokens if last else generated,
                "stop_reason": reason,
            }
        elif name == "mistral":
            chunk = {"outputs": [{"text": delta.text, "stop_reason": reason}]}
        elif name == "OpenAICompletion":
            chunk = {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": model_arn,
                "choices": [{"index": 0, "text": delta.text, "logprobs": None, "finish_reason": reason}],
            }
        else:
            chunk = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_arn,
                "choices": [
                    {"index": 0, "delta": {"content": delta.text}, "logprobs": None, "finish_reason": reason}
                ],
            }
        if last:
            if name.startswith("OpenAI") and request.usage_chunk:
                yield chunk  # the last choice, then the usage in a chunk of its own
                chunk = {key: chunk[key] for key in ("id", "object", "created", "model")}
                chunk["choices"] = []
            if name.startswith("OpenAI") and request.include_usage:
                chunk["usage"] = _usage(delta)
            end = time.perf_counter()
            chunk["amazon-bedrock-invocationMetrics"] = {
                "inputTokenCount": delta.prompt_tokens,
                "outputTokenCount": delta.completion_tokens,
                "invocationLatency": int((end - started) * 1000),
                "firstByteLatency": int(((first_byte or end) - started) * 1000),
            }
        yield chunk
