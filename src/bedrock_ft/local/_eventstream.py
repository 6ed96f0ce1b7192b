"""The AWS event stream framing (`application/vnd.amazon.eventstream`) for the streaming operations.

InvokeModelWithResponseStream and ConverseStream answer with a sequence of binary messages::

    prelude:  total length (u32) | headers length (u32) | CRC32 of those 8 bytes (u32)
    headers:  name length (u8) | name | value type (u8, 7 = string) | value length (u16) | value
    payload:  the event's JSON
    trailer:  CRC32 of everything before it (u32), all big-endian

botocore's `EventStreamBuffer` checks both CRCs and the length limits, then reads `:message-type`
(`event` or `exception`) and `:event-type` / `:exception-type`, which name members of the operation's
stream shape (`ResponseStream`, `ConverseStreamOutput`).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CONTENT_TYPE",
    "CONVERSE_STREAM_EVENTS",
    "content_block_delta",
    "content_block_stop",
    "converse_stream_event",
    "encode_error",
    "encode_event",
    "encode_exception",
    "encode_message",
    "invoke_stream_chunk",
    "message_start",
    "message_stop",
    "metadata_event",
]

CONTENT_TYPE = "application/vnd.amazon.eventstream"
# The event members of botocore's ConverseStreamOutput; the exceptions go through encode_exception.
CONVERSE_STREAM_EVENTS = frozenset(
    {"messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"}
)
_STRING = 7
_MAX_HEADERS = 128 * 1024  # botocore's limits: larger messages are refused by the client
_MAX_PAYLOAD = 24 * 1024 * 1024


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One framed message; every header is a string (type 7), the only kind Bedrock sends."""
    encoded = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
        if not 0 < len(raw_name) < 256 or len(raw_value) > 0xFFFF:
            raise ValueError(f"event stream header {name!r} is too long")
        encoded += struct.pack("!B", len(raw_name)) + raw_name
        encoded += struct.pack("!BH", _STRING, len(raw_value)) + raw_value
    if len(encoded) > _MAX_HEADERS or len(payload) > _MAX_PAYLOAD:
        raise ValueError("event stream message exceeds the headers or payload limit")
    prelude = struct.pack("!II", 16 + len(encoded) + len(payload), len(encoded))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + bytes(encoded) + payload
    return message + struct.pack("!I", zlib.crc32(message))


def encode_event(event_type: str, payload: bytes) -> bytes:
    """An `event` message; `event_type` names a member of the operation's stream shape."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, payload)


def encode_exception(exception_type: str, payload: bytes) -> bytes:
    """A modeled error inside the stream, e.g. `modelStreamErrorException` with `{"message": ...}`.

    botocore raises it from the iterator as `EventStreamError`, `Error.Code` = `exception_type`.
    """
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, payload)


def encode_error(error_code: str, error_message: str) -> bytes:
    """An unmodeled error (`:message-type` error): botocore reads code and message from the headers."""
    headers = {":error-code": error_code, ":error-message": error_message, ":message-type": "error"}
    return encode_message(headers, b"")


def invoke_stream_chunk(obj: Mapping[str, Any] | bytes) -> bytes:
    """An InvokeModelWithResponseStream `chunk`: the model's JSON chunk, base64 inside `{"bytes": ...}`.

    boto3 hands the caller `event["chunk"]["bytes"]` as the decoded bytes of `obj`.
    """
    raw = obj if isinstance(obj, bytes) else _json(obj)
    return encode_event("chunk", _json({"bytes": base64.b64encode(raw).decode("ascii")}))


def converse_stream_event(event_type: str, body: Mapping[str, Any]) -> bytes:
    """A ConverseStream event, refusing a name botocore would silently drop."""
    if event_type not in CONVERSE_STREAM_EVENTS:
        raise ValueError(f"{event_type!r} is not a ConverseStream event: {sorted(CONVERSE_STREAM_EVENTS)}")
    return encode_event(event_type, _json(body))


def message_start(role: str = "assistant") -> bytes:
    return converse_stream_event("messageStart", {"role": role})


def content_block_delta(index: int, text: str) -> bytes:
    return converse_stream_event("contentBlockDelta", {"delta": {"text": text}, "contentBlockIndex": index})


def content_block_stop(index: int) -> bytes:
    return converse_stream_event("contentBlockStop", {"contentBlockIndex": index})


def message_stop(stop_reason: str) -> bytes:
    """`stop_reason` is one of botocore's StopReason values: end_turn, max_tokens, stop_sequence, ..."""
    return converse_stream_event("messageStop", {"stopReason": stop_reason})


def metadata_event(input_tokens: int, output_tokens: int, latency_ms: int) -> bytes:
    """The closing `metadata` event: TokenUsage and ConverseStreamMetrics, all of their required members."""
    usage = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
    }
    return converse_stream_event("metadata", {"usage": usage, "metrics": {"latencyMs": latency_ms}})
