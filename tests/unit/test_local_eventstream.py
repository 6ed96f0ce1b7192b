"""The local Bedrock's event stream frames, decoded by botocore's own parser."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.parsers import create_parser

from bedrock_ft.local import _eventstream as E
from bedrock_ft.local import _shapes

ARN = "arn:aws:bedrock:us-east-1:123456789012:imported-model/abc123def456"


class _Raw:
    """A response body that arrives in small pieces, as a socket would deliver it."""

    def __init__(self, data: bytes, piece: int = 7) -> None:
        self.data, self.piece = data, piece

    def stream(self, **_: Any) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.piece):
            yield self.data[start : start + self.piece]

    def close(self) -> None:
        pass


def _messages(data: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def _events(operation: str, data: bytes) -> list[dict[str, Any]]:
    """Parse as botocore's rest-json parser does for a real response: payload member -> EventStream."""
    op = _shapes.operation_model("bedrock-runtime", operation)
    response = {
        "status_code": 200,
        "headers": {},
        "body": _Raw(data),
        "context": {"operation_name": operation},
    }
    parsed = create_parser("rest-json").parse(response, op.output_shape)
    return list(parsed[op.output_shape.serialization["payload"]])


def _stream_shape(operation: str) -> Any:
    op = _shapes.operation_model("bedrock-runtime", operation)
    return op.output_shape.members[op.output_shape.serialization["payload"]]


# --- framing ---------------------------------------------------------------------------------------


def test_the_frame_layout_is_the_documented_one() -> None:
    frame = E.encode_event("chunk", b'{"a":1}')
    total, headers_length, prelude_crc = struct.unpack("!III", frame[:12])
    assert total == len(frame)
    assert prelude_crc == zlib.crc32(frame[:8])
    assert struct.unpack("!I", frame[-4:])[0] == zlib.crc32(frame[:-4])
    assert frame[12 + headers_length : -4] == b'{"a":1}'
    assert frame[12:25] == b"\x0b:event-type\x07"  # name length, name, type 7 (string)


def test_botocore_reads_headers_and_payload_across_piece_boundaries() -> None:
    data = E.encode_event("chunk", b'{"a":1}') + E.encode_exception(
        "throttlingException", b'{"message":"slow"}'
    )
    buffer = EventStreamBuffer()
    messages = []
    for piece in _Raw(data, piece=3).stream():
        buffer.add_data(piece)
        messages += list(buffer)
    first, second = messages
    assert first.headers == {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert first.payload == b'{"a":1}'
    assert second.headers == {
        ":exception-type": "throttlingException",
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    assert second.payload == b'{"message":"slow"}'


@pytest.mark.parametrize("where", [5, 20, -6, -1])  # prelude, headers, payload, message CRC
def test_a_corrupted_byte_fails_botocores_checksum(where: int) -> None:
    frame = bytearray(E.encode_event("chunk", b'{"bytes":"eyJhIjoxfQ=="}'))
    assert len(_messages(bytes(frame))) == 1
    frame[where] ^= 0x01
    with pytest.raises(ChecksumMismatch):
        _messages(bytes(frame))


def test_headers_that_cannot_be_framed_are_refused() -> None:
    with pytest.raises(ValueError, match="too long"):
        E.encode_message({"x" * 256: "v"}, b"")
    with pytest.raises(ValueError, match="too long"):
        E.encode_message({":event-type": "v" * 70000}, b"")


# --- InvokeModelWithResponseStream ------------------------------------------------------------------


def test_invoke_stream_chunks_decode_to_the_model_json() -> None:
    chunks = [{"generation": "Hel", "stop_reason": None}, {"generation": "lo", "stop_reason": "stop"}]
    frame = E.invoke_stream_chunk(chunks[0])
    assert json.loads(_messages(frame)[0].payload) == {
        "bytes": base64.b64encode(b'{"generation":"Hel","stop_reason":null}').decode()
    }
    events = _events("InvokeModelWithResponseStream", b"".join(E.invoke_stream_chunk(c) for c in chunks))
    assert [json.loads(event["chunk"]["bytes"]) for event in events] == chunks
    assert _events("InvokeModelWithResponseStream", E.invoke_stream_chunk(b"raw bytes"))[0] == {
        "chunk": {"bytes": b"raw bytes"}
    }


def test_an_exception_event_raises_from_the_stream_as_botocore_does() -> None:
    payload = json.dumps({"message": "CUDA out of memory", "originalStatusCode": 500}).encode()
    data = E.invoke_stream_chunk({"generation": "x"}) + E.encode_exception(
        "modelStreamErrorException", payload
    )
    op = _shapes.operation_model("bedrock-runtime", "InvokeModelWithResponseStream")
    response = {"status_code": 200, "headers": {}, "body": _Raw(data), "context": {"operation_name": "X"}}
    stream = iter(create_parser("rest-json").parse(response, op.output_shape)["body"])
    assert "chunk" in next(stream)
    with pytest.raises(EventStreamError) as caught:
        next(stream)
    assert caught.value.response["Error"] == {
        "Code": "modelStreamErrorException",
        "Message": "CUDA out of memory",
    }
    assert "modelStreamErrorException" in _stream_shape("InvokeModelWithResponseStream").members


def test_an_unmodeled_error_message_surfaces_its_header_code() -> None:
    with pytest.raises(EventStreamError) as caught:
        _events("InvokeModelWithResponseStream", E.encode_error("InternalFailure", "it broke"))
    assert caught.value.response["Error"] == {"Code": "InternalFailure", "Message": "it broke"}


def test_boto3_style_client_reads_the_stream_end_to_end() -> None:
    """The whole client path: HTTP response -> parser -> EventStream -> the caller's loop."""
    chunks = [{"generation": "a"}, {"generation": "b"}]
    data = b"".join(E.invoke_stream_chunk(c) for c in chunks)
    client = botocore.session.get_session().create_client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip

    def respond(request: Any, **_: Any) -> AWSResponse:
        headers = {"content-type": E.CONTENT_TYPE, "x-amzn-bedrock-content-type": "application/json"}
        return AWSResponse(request.url, 200, headers, _Raw(data))

    client.meta.events.register("before-send", respond)
    response = client.invoke_model_with_response_stream(modelId=ARN, body=b"{}")
    assert response["contentType"] == "application/json"
    assert [json.loads(e["chunk"]["bytes"]) for e in response["body"]] == chunks


# --- ConverseStream --------------------------------------------------------------------------------


def test_converse_stream_events_decode_and_satisfy_their_shapes() -> None:
    frames = [
        E.message_start(),
        E.content_block_delta(0, "Hel"),
        E.content_block_delta(0, "lo ✓"),
        E.content_block_stop(0),
        E.message_stop("end_turn"),
        E.metadata_event(input_tokens=5, output_tokens=2, latency_ms=31),
    ]
    events = _events("ConverseStream", b"".join(frames))
    assert events == [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"delta": {"text": "Hel"}, "contentBlockIndex": 0}},
        {"contentBlockDelta": {"delta": {"text": "lo ✓"}, "contentBlockIndex": 0}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": "end_turn"}},
        {
            "metadata": {
                "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7},
                "metrics": {"latencyMs": 31},
            }
        },
    ]
    stream_shape = _stream_shape("ConverseStream")
    for event in events:
        ((name, body),) = event.items()
        assert _shapes.validate_value(stream_shape.members[name], body, name) == []


def test_a_bad_stop_reason_is_caught_by_the_shape_check() -> None:
    (event,) = _events("ConverseStream", E.message_stop("finished"))
    errors = _shapes.validate_value(
        _stream_shape("ConverseStream").members["messageStop"], event["messageStop"]
    )
    assert len(errors) == 1 and "Member must satisfy enum value set: [end_turn" in errors[0]


def test_converse_stream_event_names_match_the_model() -> None:
    stream_shape = _stream_shape("ConverseStream")
    events = {name for name, member in stream_shape.members.items() if member.serialization.get("event")}
    assert events == E.CONVERSE_STREAM_EVENTS
    with pytest.raises(ValueError, match="not a ConverseStream event"):
        E.converse_stream_event("messageDelta", {})


def test_a_converse_stream_throttling_exception_is_raised() -> None:
    data = E.message_start() + E.encode_exception("throttlingException", b'{"message":"Too many requests"}')
    with pytest.raises(EventStreamError) as caught:
        _events("ConverseStream", data)
    assert caught.value.response["Error"]["Code"] == "throttlingException"
    assert "Too many requests" in str(caught.value)
