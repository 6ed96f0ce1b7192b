"""What every InvokeModel body format shares: the codec interface and strict response reading."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from bedrock_ft.errors import MalformedResponseError, UnsupportedFormatError
from bedrock_ft.formats import FORMATS, SAMPLING_SETTINGS, BodyFormat
from bedrock_ft.runtime._config import GenerationParams
from bedrock_ft.runtime._features import Features
from bedrock_ft.runtime._results import TokenLogprob, ToolCall

__all__ = ["Codec", "Decoded", "dig", "normalize_finish_reason", "parse_json", "quote"]

QUOTE_CHARS = 200

# Stop reasons as the formats spell them -> the two the library reports, where they mean the same.
_FINISH = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "eos": "stop",
    "length": "length",
    "max_tokens": "length",
}


def normalize_finish_reason(reason: Any) -> str | None:
    """``"stop"`` (the model ended, or hit a stop sequence), ``"length"`` (max tokens), or the
    service's own word for anything else."""
    if reason is None:
        return None
    return _FINISH.get(str(reason), str(reason))


def quote(body: bytes | str | Mapping[str, Any]) -> str:
    """The first characters of a response body, for error messages."""
    if isinstance(body, Mapping):
        text = json.dumps(body, default=str)
    elif isinstance(body, bytes):
        text = body.decode("utf-8", errors="replace")
    else:
        text = body
    return repr(text[:QUOTE_CHARS]) + ("..." if len(text) > QUOTE_CHARS else "")


def parse_json(body: bytes, *, fmt: str) -> dict[str, Any]:
    """A response body as a JSON object, or :class:`MalformedResponseError` quoting its start."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise MalformedResponseError(f"{fmt}: the response is not JSON: {quote(body)}") from None
    if not isinstance(data, dict):
        raise MalformedResponseError(f"{fmt}: the response is not a JSON object: {quote(body)}")
    return data


_MISSING = object()


def dig(data: Mapping[str, Any], path: str, *, fmt: str, kind: type | tuple[type, ...] = str) -> Any:
    """``data`` at ``path`` (``choices[0].message.content``), checked to be ``kind``; otherwise
    :class:`MalformedResponseError` naming the path and quoting the body."""
    current: Any = data
    for part in path.replace("]", "").replace("[", ".").split("."):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            current = _MISSING
        if current is _MISSING:
            raise MalformedResponseError(f"{fmt}: the response has no {path}: {quote(data)}")
    if not isinstance(current, kind):
        raise MalformedResponseError(
            f"{fmt}: {path} should be {_kind_name(kind)}, got {type(current).__name__}: {quote(data)}"
        )
    return current


def optional_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key) if isinstance(data, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


@dataclass(frozen=True)
class Decoded:
    """What a response (or one stream chunk) says: text, why it ended, token counts where given."""

    text: str
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class Codec(ABC):
    """One InvokeModel body format: builds request bodies, reads responses and stream chunks.

    A codec names its entry of :data:`bedrock_ft.formats.FORMATS` (``class X(Codec, body_format=...)``),
    which decides its keys: what it sends is what the local Bedrock accepts.
    """

    body_format: ClassVar[BodyFormat]
    name: ClassVar[str]
    """The format's name, as in :data:`bedrock_ft.formats.FORMATS`."""
    takes_messages: ClassVar[bool]
    """True when the body carries ``messages`` (a chat); False when it carries a ``prompt``."""
    max_tokens_key: ClassVar[str]
    """The body key that caps generated tokens."""
    optional: ClassVar[Mapping[str, str]]
    """Optional sampling settings the format accepts: library name -> body key."""

    def __init_subclass__(cls, *, body_format: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if body_format is not None:
            fmt = FORMATS[body_format]
            cls.body_format, cls.name, cls.takes_messages = fmt, fmt.name, fmt.takes_messages
            cls.max_tokens_key, cls.optional = fmt.max_tokens_key, fmt.sampling

    def body(
        self,
        params: GenerationParams,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        features: Features | None = None,
    ) -> dict[str, Any]:
        """The request body. Settings and features the format can't carry raise before anything is sent."""
        unsupported = [
            key for key in SAMPLING_SETTINGS if _is_set(getattr(params, key)) and key not in self.optional
        ]
        if unsupported:
            accepted = ", ".join(["max_tokens", *self.optional]) or "none"
            raise UnsupportedFormatError(
                f"the {self.name} format has no {', '.join(unsupported)} (it takes: {accepted})"
            )
        body: dict[str, Any] = {}
        if self.takes_messages:
            body["messages"] = [dict(m) for m in messages or ()]
        else:
            body["prompt"] = prompt
        body[self.max_tokens_key] = params.max_tokens
        for key, wire in self.optional.items():
            value = getattr(params, key)
            if _is_set(value):
                body[wire] = list(value) if isinstance(value, tuple) else value
        if features is not None and features.names():
            self.add_features(body, features)
        return body

    def add_features(self, body: dict[str, Any], features: Features) -> None:
        """Put ``features`` in ``body``, in this format's shape. This format takes none of them."""
        raise UnsupportedFormatError(
            f"the {self.name} format has no {', '.join(features.names())} (the features of models imported "
            "after 2025-11-11 go with the OpenAI formats and, for response_format, BedrockCompletion)"
        )

    @abstractmethod
    def decode(self, data: Mapping[str, Any]) -> Decoded:
        """Read a whole InvokeModel response body."""

    @abstractmethod
    def decode_chunk(self, data: Mapping[str, Any]) -> Decoded:
        """Read one InvokeModelWithResponseStream chunk: its text delta, and on the last one the
        finish reason and token counts."""


def _is_set(value: Any) -> bool:
    return value is not None and value != ()


def invocation_metrics(data: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """Token counts from the ``amazon-bedrock-invocationMetrics`` Bedrock adds to a stream's last chunk."""
    metrics = data.get("amazon-bedrock-invocationMetrics")
    if not isinstance(metrics, Mapping):
        return None, None
    return optional_int(metrics, "inputTokenCount"), optional_int(metrics, "outputTokenCount")
