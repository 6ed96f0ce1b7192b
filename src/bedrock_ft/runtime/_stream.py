"""A streamed answer: text chunks as they arrive, and the whole completion once the stream ends."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from bedrock_ft.errors import BedrockFTError, MalformedResponseError, translate_client_errors
from bedrock_ft.runtime._results import Completion, TokenLogprob
from bedrock_ft.runtime.codecs import Codec, Decoded, parse_json

__all__ = ["EventDecoder", "TextStream", "invoke_stream_decoder"]

EventDecoder = Callable[[Any], tuple[Decoded, Mapping[str, Any]]]
"""Reads one event of a response stream: what it says, and the data it carried."""


def invoke_stream_decoder(codec: Codec) -> EventDecoder:
    """InvokeModelWithResponseStream events: ``{"chunk": {"bytes": <a JSON body in codec's format>}}``."""

    def decode(event: Any) -> tuple[Decoded, Mapping[str, Any]]:
        chunk = event.get("chunk") if isinstance(event, dict) else None
        if not isinstance(chunk, dict) or not isinstance(chunk.get("bytes"), bytes):
            raise MalformedResponseError(f"{codec.name}: unexpected stream event: {str(event)[:200]!r}")
        data = parse_json(chunk["bytes"], fmt=codec.name)
        return codec.decode_chunk(data), data

    return decode


class TextStream(Iterator[str]):
    """Iterate it for the text chunks. Once it is exhausted, :attr:`completion` holds the whole answer
    with its finish reason and token counts. Use it as a context manager (or call :meth:`close`) to
    release the connection when stopping early."""

    def __init__(
        self,
        response: dict[str, Any],
        decode: EventDecoder,
        *,
        api_format: str,
        operation: str,
        events_key: str = "body",
        model_id: str,
        started: float,
        attempts: int,
        on_done: Callable[[Completion | None, BedrockFTError | None], None],
        response_format: Any = None,
    ) -> None:
        self._response = response
        self._decode = decode
        self._api_format = api_format
        self._operation = operation
        self._events_key = events_key
        self._model_id = model_id
        self._started = started
        self._attempts = attempts
        self._on_done = on_done
        self._response_format = response_format
        self._events = iter(response[events_key])
        self._parts: list[str] = []
        self._finish: str | None = None
        self._tokens: tuple[int | None, int | None] = (None, None)
        self._last: dict[str, Any] = {}
        self._logprobs: list[TokenLogprob] | None = None
        self._done = False
        self.completion: Completion | None = None
        """The whole answer, set when the stream has ended."""

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        while not self._done:
            try:
                with translate_client_errors(self._operation):
                    event = next(self._events, None)
                text = self._read(event)
            except BedrockFTError as exc:
                self._end(exc)
                raise
            if event is None:
                self._end(None)
                break
            if text:
                return text
        raise StopIteration

    def _read(self, event: Any) -> str:
        if event is None:
            return ""
        decoded, data = self._decode(event)
        self._last = dict(data) if isinstance(data, Mapping) else {}
        if decoded.finish_reason is not None:
            self._finish = decoded.finish_reason
        if decoded.input_tokens is not None or decoded.output_tokens is not None:
            self._tokens = (
                decoded.input_tokens if decoded.input_tokens is not None else self._tokens[0],
                decoded.output_tokens if decoded.output_tokens is not None else self._tokens[1],
            )
        if decoded.logprobs is not None:
            if self._logprobs is None:
                self._logprobs = []
            self._logprobs.extend(decoded.logprobs)
        self._parts.append(decoded.text)
        return decoded.text

    def _end(self, error: BedrockFTError | None, *, closed: bool = False) -> None:
        """Account for the request once: a whole answer, an error, or (``closed`` early) the part read."""
        if self._done:
            return
        self._done = True
        answer = None
        if error is None:
            answer = Completion(
                text="".join(self._parts),
                finish_reason=self._finish if not closed else None,
                input_tokens=self._tokens[0],
                output_tokens=self._tokens[1],
                latency_s=time.perf_counter() - self._started,
                api_format=self._api_format,
                model_id=self._model_id,
                attempts=self._attempts,
                raw=self._last,
                logprobs=tuple(self._logprobs) if self._logprobs is not None else None,
                response_format=self._response_format,
            )
        if not closed:
            self.completion = answer
        self._close_body()
        self._on_done(answer, error)

    def _close_body(self) -> None:
        body = self._response.get(self._events_key)
        if body is not None and hasattr(body, "close"):
            body.close()

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    def close(self) -> None:
        """Stop reading and release the connection. The answer so far stays in :attr:`text` (it is
        counted in usage as a request); :attr:`completion` stays None."""
        self._end(None, closed=True)
        self._close_body()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
