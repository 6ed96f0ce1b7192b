"""What every call of :class:`~bedrock_ft.runtime.ImportedModelClient` goes through: the runtime
client and its connection pool, the retry policy, decoding with token counts, and usage accounting."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bedrock_ft.aws import AwsConfig
from bedrock_ft.errors import BedrockFTError, translate_client_errors
from bedrock_ft.progress import Progress
from bedrock_ft.runtime._config import InvokeConfig
from bedrock_ft.runtime._results import Completion, RetryEvent, Usage
from bedrock_ft.runtime._retry import OnRetry, attempts_of, call_with_retries
from bedrock_ft.runtime._stream import EventDecoder, TextStream
from bedrock_ft.runtime.codecs import Codec, Decoded, parse_json

__all__ = ["Transport"]

T = TypeVar("T")

_MODEL_HEADERS = ("x-amzn-bedrock-input-token-count", "x-amzn-bedrock-output-token-count")


class Transport:
    """Sends requests for one imported model and records their usage. The subclass names the model:
    ``model_id`` (what requests send) and ``model_name`` (what messages say)."""

    model_id: str
    model_name: str

    def __init__(
        self, config: InvokeConfig, aws: AwsConfig, *, on_retry: OnRetry | None, progress: Progress | None
    ) -> None:
        self.config = config
        self.usage = Usage()
        """Tokens and requests of every call made through this client (see :class:`Usage`)."""
        self._aws = aws
        self._on_retry = on_retry
        self._progress = progress
        self._lock = threading.Lock()
        self._runtime: Any = None
        self._runtime_pool = 0
        self._executor: ThreadPoolExecutor | None = None

    def _client(self, pool: int = 0) -> Any:
        """The bedrock-runtime client: one attempt per request (the policy in _retry is the only one that
        retries), botocore's adaptive client-side rate limiter (after a ThrottlingException every thread
        slows down together, instead of each retrying into the limit), and a connection pool as large
        as the concurrency asked for."""
        with self._lock:
            size = max(10, pool + 2, self.config.max_concurrency + 2)
            if self._runtime is None or size > self._runtime_pool:
                from botocore.config import Config

                mode = "adaptive" if self.config.adaptive_rate_limit else "standard"
                config = Config(retries={"mode": mode, "total_max_attempts": 1}, max_pool_connections=size)
                self._runtime = self._aws.client("bedrock-runtime", config=config)
                self._runtime_pool = size
            return self._runtime

    def _open_stream(
        self,
        send: Callable[[], dict[str, Any]],
        operation: str,
        decode: EventDecoder,
        fmt: str,
        key: str,
        *,
        response_format: Any = None,
    ) -> TextStream:
        """Start a response stream (retrying its start: a cold start, throttling) and wrap it; usage is
        recorded when it ends, fails or is closed."""
        started = time.perf_counter()

        def start() -> dict[str, Any]:
            with translate_client_errors(operation):
                return send()

        try:
            response, attempts = self._retrying(start, operation)
        except BedrockFTError as exc:
            self.usage.record(retries=attempts_of(exc) - 1, error=True)
            raise

        def done(completion: Completion | None, error: BedrockFTError | None) -> None:
            self.usage.record(completion, retries=attempts - 1, error=error is not None)

        return TextStream(
            response,
            decode,
            api_format=fmt,
            operation=operation,
            events_key=key,
            model_id=self.model_id,
            started=started,
            attempts=attempts,
            on_done=done,
            response_format=response_format,
        )

    def _invoke(self, codec: Codec, body: dict[str, Any], config: InvokeConfig | None = None) -> Completion:
        runtime = self._client()
        payload = json.dumps(body).encode("utf-8")
        started = time.perf_counter()

        def send() -> tuple[dict[str, Any], bytes]:
            with translate_client_errors("InvokeModel"):
                response = runtime.invoke_model(
                    modelId=self.model_id,
                    body=payload,
                    contentType="application/json",
                    accept="application/json",
                )
                return response, response["body"].read()

        def decode(result: tuple[dict[str, Any], bytes]) -> tuple[Decoded, dict[str, Any], dict[str, str]]:
            response, raw = result
            data = parse_json(raw, fmt=codec.name)
            headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
            return codec.decode(data), data, headers

        return self._finish(send, "InvokeModel", started, decode, codec.name, config)

    def _finish(  # noqa: PLR0917 - internal
        self,
        send: Callable[[], T],
        operation: str,
        started: float,
        decode: Callable[[T], tuple[Decoded, Mapping[str, Any], Mapping[str, str]]],
        fmt: str,
        config: InvokeConfig | None = None,
    ) -> Completion:
        try:
            result, attempts = self._retrying(send, operation, config)
        except BedrockFTError as exc:
            self.usage.record(retries=attempts_of(exc) - 1, error=True)
            raise
        try:
            decoded, raw, headers = decode(result)
        except BedrockFTError as exc:  # a body of the wrong shape, after the requests it took
            exc.attempts = attempts  # type: ignore[attr-defined]
            self.usage.record(retries=attempts - 1, error=True)
            raise
        tokens_in, tokens_out = decoded.input_tokens, decoded.output_tokens
        if tokens_in is None:
            tokens_in = _int_header(headers, _MODEL_HEADERS[0])
        if tokens_out is None:
            tokens_out = _int_header(headers, _MODEL_HEADERS[1])
        completion = Completion(
            text=decoded.text,
            finish_reason=decoded.finish_reason,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            latency_s=time.perf_counter() - started,
            api_format=fmt,
            model_id=self.model_id,
            attempts=attempts,
            raw=dict(raw),
            logprobs=decoded.logprobs,
            tool_calls=decoded.tool_calls,
        )
        self.usage.record(completion, retries=attempts - 1)
        return completion

    def _retrying(
        self, send: Callable[[], T], operation: str, config: InvokeConfig | None = None
    ) -> tuple[T, int]:
        try:
            return call_with_retries(send, config or self.config, operation=operation, on_retry=self._notify)
        except BedrockFTError as exc:
            if exc.aws is not None and exc.aws.code == "ValidationException":
                exc.args = (f"{exc} (model {self.model_name})",)
            raise

    def _notify(self, event: RetryEvent) -> None:
        if self._progress is not None:
            self._progress(f"{self.model_name}: {event.describe()}")
        if self._on_retry is not None:
            self._on_retry(event)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
