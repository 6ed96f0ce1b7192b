"""ImportedModelClient: the Bedrock client for imported models that applications use.

Light (boto3, no torch), thread-safe (one instance can serve every thread of an application), and
the same code against AWS and against the local Bedrock. docs/invoking.md has the details.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bedrock_ft.artifacts import ImportedModel
from bedrock_ft.bedrock import _formats
from bedrock_ft.bedrock._chat import ChatRenderer, check_messages, check_prompt
from bedrock_ft.bedrock._concurrent import ConcurrentCalls, Messages
from bedrock_ft.bedrock._converse import converse_request, decode_converse, decode_converse_event
from bedrock_ft.bedrock._retry import OnRetry, attempts_of, call_with_retries
from bedrock_ft.bedrock._stream import EventDecoder, TextStream, invoke_stream_decoder
from bedrock_ft.bedrock.codecs import Codec, Decoded, get_codec, parse_json
from bedrock_ft.bedrock.invoke_config import GenerationParams, InvokeConfig, generation_params
from bedrock_ft.bedrock.results import Completion, RetryEvent, Usage
from bedrock_ft.errors import (
    ArtifactError,
    BedrockFTError,
    RequestValidationError,
    UnsupportedFormatError,
    translate_client_errors,
)

__all__ = ["ImportedModelClient"]

T = TypeVar("T")

_MODEL_HEADERS = ("x-amzn-bedrock-input-token-count", "x-amzn-bedrock-output-token-count")


class ImportedModelClient(ConcurrentCalls):
    """Invoke a model imported with Custom Model Import.

    ``complete(prompt)``, ``chat(messages)``, ``stream(...)`` and ``converse(messages)`` each return (or
    yield) the answer with its finish reason, token counts and latency; ``a``-prefixed twins are
    awaitable, and ``batch_complete``/``batch_chat`` run many requests through a bounded pool.

    Cold starts (``ModelNotReadyException``) are retried until ``InvokeConfig.cold_start_timeout``;
    throttling, unavailability and model timeouts up to ``InvokeConfig.max_attempts``; validation
    errors never. ``on_retry`` is told of each retry, ``progress`` gets a line per retry.
    """

    def __init__(
        self,
        model: ImportedModel,
        config: InvokeConfig | None = None,
        *,
        on_retry: OnRetry | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(model, ImportedModel):
            raise ArtifactError(
                f"ImportedModelClient takes an ImportedModel (BedrockImporter.import_model's result), got "
                f"{type(model).__name__}; for an ARN use ImportedModelClient.from_arn(arn)"
            )
        if not model.model_arn:
            raise ArtifactError(
                f"{model.model_name} has no model ARN yet (import job {model.job_name or '?'} is "
                f"{model.status}); wait for it with BedrockImporter.wait()"
            )
        region, _ = _formats.parse_imported_model_arn(model.model_arn)
        config = config or InvokeConfig()
        if config.aws.region is not None and config.aws.region != region:
            raise RequestValidationError(
                f"model ARN {model.model_arn} is in {region}, but InvokeConfig.aws.region is "
                f"{config.aws.region}; Bedrock serves a model only in its own region"
            )
        self.model = model
        self.config = config
        self.architecture = _formats.architecture_of(model)
        self.usage = Usage()
        """Tokens and requests of every call made through this client (see :class:`Usage`)."""
        self._aws = config.aws if config.aws.region else config.aws.replace(region=region)
        self._on_retry = on_retry
        self._progress = progress
        self._lock = threading.Lock()
        self._runtime: Any = None
        self._runtime_pool = 0
        self._executor: ThreadPoolExecutor | None = None
        template = config.chat_template or model.chat_template
        self._renderer = (
            ChatRenderer(template, model.special_tokens, strip_bos=bool(model.adds_bos_token))
            if template
            else None
        )

    @classmethod
    def from_arn(
        cls,
        arn: str,
        config: InvokeConfig | None = None,
        *,
        describe: bool = True,
        chat_template: str | None = None,
        special_tokens: Mapping[str, str] | None = None,
        on_retry: OnRetry | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> ImportedModelClient:
        """A client for the imported model ``arn``.

        ``describe`` asks Bedrock (``GetImportedModel``) for its architecture, whether it has a chat
        template and when it was imported, which pick the body format, and reads the chat template and
        special tokens from the tokenizer files in the S3 prefix it was imported from (best effort:
        ``s3:GetObject`` is needed). With ``describe=False`` the client needs only
        ``bedrock:InvokeModel`` permission and assumes a model imported after 2025-11-11.
        ``chat_template`` is the template the model was trained with, for ``chat()`` sent as a prompt.
        """
        region, model_id = _formats.parse_imported_model_arn(arn)
        config = config or InvokeConfig()
        aws = config.aws if config.aws.region else config.aws.replace(region=region)
        if describe:
            from bedrock_ft.bedrock.importer import BedrockImporter

            importer = BedrockImporter(aws=aws)
            model = importer.get(arn)
            try:  # the training template and its tokens: from the files Bedrock imported
                facts = importer.chat_facts(model)
            except BedrockFTError as exc:
                facts = {}
                if progress is not None:
                    progress(f"chat template not read from {model.s3_uri}: {exc}")
            model = model.model_copy(update={k: v for k, v in facts.items() if v is not None})
        else:
            model = ImportedModel(model_arn=arn, model_name=model_id, region=region)
        updates: dict[str, Any] = {}
        if chat_template is not None:
            updates["chat_template"] = chat_template
        if special_tokens is not None:
            updates["special_tokens"] = dict(special_tokens)
        return cls(model.model_copy(update=updates), config, on_retry=on_retry, progress=progress)

    # --- properties ---------------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return str(self.model.model_arn)

    @property
    def formats(self) -> tuple[str, ...]:
        """The formats this model takes (``Converse`` included where the Converse API works)."""
        return _formats.accepted_formats(self.model, self.architecture)

    def __repr__(self) -> str:
        return f"ImportedModelClient({self.model.model_name!r}, {self.model_id!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """A client travels (pickle, Ray, multiprocessing) as what rebuilds it, its model and config: the
        copy opens its own connections and counts its own usage; callbacks stay behind."""
        return (type(self), (self.model, self.config))

    # --- the calls ----------------------------------------------------------------------------------

    def complete(self, prompt: str, *, api_format: str | None = None, **params: Any) -> Completion:
        """Complete ``prompt`` as it is (no chat template applied). ``params``: max_tokens, temperature,
        top_p, top_k, stop, seed; they override ``InvokeConfig.generation``."""
        codec, body = self._prepare("complete", prompt, api_format, params)
        return self._invoke(codec, body)

    def chat(self, messages: Messages, *, api_format: str | None = None, **params: Any) -> Completion:
        """Answer a conversation (``[{"role": "user", "content": "..."}]``). Sent as messages where
        Bedrock has the model's chat template; otherwise rendered here with the training template."""
        codec, body = self._prepare("chat", messages, api_format, params)
        return self._invoke(codec, body)

    def stream(
        self, prompt_or_messages: str | Messages, *, api_format: str | None = None, **params: Any
    ) -> TextStream:
        """Like :meth:`complete` (a string) or :meth:`chat` (messages), but yields text chunks as they
        come. ``stream.completion`` holds the whole answer once the iteration ends."""
        call: _formats.Call = "complete" if isinstance(prompt_or_messages, str) else "chat"
        codec, body = self._prepare(call, prompt_or_messages, api_format, params)
        runtime = self._client()
        payload = json.dumps(body).encode("utf-8")

        def send() -> dict[str, Any]:
            response: dict[str, Any] = runtime.invoke_model_with_response_stream(
                modelId=self.model_id, body=payload, contentType="application/json", accept="application/json"
            )
            return response

        operation = "InvokeModelWithResponseStream"
        return self._open_stream(send, operation, invoke_stream_decoder(codec), codec.name, "body")

    def converse(self, messages: Messages, *, system: str | None = None, **params: Any) -> Completion:
        """The Converse API. Refused before sending for architectures Bedrock serves without it (Qwen2.5,
        Qwen2-VL, Qwen2.5-VL, GPT-OSS) and for models imported without a chat template."""
        request = self._converse_request("converse()", messages, system, params)
        runtime = self._client()
        started = time.perf_counter()

        def send() -> dict[str, Any]:
            with translate_client_errors("Converse"):
                response: dict[str, Any] = runtime.converse(modelId=self.model_id, **request)
                return response

        return self._finish(send, "Converse", started, lambda r: (decode_converse(r), r, {}), "Converse")

    def converse_stream(self, messages: Messages, *, system: str | None = None, **params: Any) -> TextStream:
        """:meth:`converse` through ConverseStream: text chunks as they come, as :meth:`stream` yields."""
        request = self._converse_request("converse_stream()", messages, system, params)
        runtime = self._client()

        def send() -> dict[str, Any]:
            response: dict[str, Any] = runtime.converse_stream(modelId=self.model_id, **request)
            return response

        return self._open_stream(send, "ConverseStream", decode_converse_event, "Converse", "stream")

    def render_chat(self, messages: Messages) -> str:
        """The prompt ``chat(messages)`` sends when it goes out as a prompt: the messages rendered with
        the model's training chat template, with the generation prompt."""
        checked = check_messages(messages, call="render_chat()")
        return self._need_renderer("render_chat()").as_prompt(checked, call="render_chat()")

    def warm_up(self, timeout: float | None = None) -> float:
        """Wake a scaled-to-zero model: send a one-token request and wait (retrying the cold start, up
        to ``timeout`` or ``InvokeConfig.cold_start_timeout`` seconds) until it answers. Returns the
        seconds it took."""
        started = time.perf_counter()
        config = self.config if timeout is None else self.config.replace(cold_start_timeout=timeout)
        params = {"max_tokens": 1, "stop": ()}
        if self.config.api_format == "OpenAIChatCompletion":  # configured to send messages only
            codec, body = self._prepare("chat", [{"role": "user", "content": "Hello"}], None, params)
        else:
            codec, body = self._prepare("complete", "Hello", None, params)
        self._invoke(codec, body, config)
        return time.perf_counter() - started

    # --- internals ------------------------------------------------------------------------------------

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

    def _need_renderer(self, call: str) -> ChatRenderer:
        if self._renderer is None:
            raise UnsupportedFormatError(
                f"{call}: {self.model.model_name} takes a prompt here, and no chat template is known to "
                "render the messages with; give the template it was trained with (InvokeConfig.chat_template "
                "or from_arn(..., chat_template=...)), or call complete()"
            )
        return self._renderer

    def _converse_request(
        self, call: str, messages: Messages, system: str | None, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        checked = check_messages(messages, call=call)
        gen = generation_params(self.config.generation, params, call=call)
        if _formats.CONVERSE not in self.formats:
            arch = self.model.architecture or "this"
            reason = (
                "Bedrock found no chat template in it"
                if self.model.instruct_supported is False
                else f"Bedrock does not offer the Converse API for {arch} models"
            )
            raise UnsupportedFormatError(
                f"{call}: {self.model.model_name}: {reason}; use chat() or complete()"
            )
        if self._renderer is not None:
            self._renderer.render(checked, call=call)  # a refused role sequence fails here
        return converse_request(checked, gen, system)

    def _open_stream(
        self, send: Callable[[], dict[str, Any]], operation: str, decode: EventDecoder, fmt: str, key: str
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
        )

    def _codec_for(self, call: _formats.Call, api_format: str | None) -> Codec:
        """The codec a call uses, or UnsupportedFormatError before anything is sent."""
        label = f"{call}()"
        requested = api_format or self.config.api_format
        if requested != "auto" and requested not in (*_formats.NEW_FORMATS, "mistral", "llama", "Converse"):
            raise UnsupportedFormatError(f"{label}: unknown api_format {requested!r}")
        try:
            return get_codec(_formats.choose_format(self.model, self.architecture, requested, call))
        except UnsupportedFormatError as exc:
            raise UnsupportedFormatError(f"{label}: {exc}") from None

    def _prepare(
        self, call: _formats.Call, payload: Any, api_format: str | None, params: Mapping[str, Any]
    ) -> tuple[Codec, dict[str, Any]]:
        """Check everything and build the body: nothing bad is sent."""
        label = f"{call}()"
        gen: GenerationParams = generation_params(self.config.generation, params, call=label)
        codec = self._codec_for(call, api_format)
        try:
            if call == "complete":
                return codec, codec.body(gen, prompt=check_prompt(payload, call=label))
            messages = check_messages(payload, call=label)
            if codec.takes_messages:
                if self._renderer is not None:
                    self._renderer.render(messages, call=label)  # a refused role sequence fails here
                return codec, codec.body(gen, messages=messages)
            prompt = self._need_renderer(label).as_prompt(messages, call=label)
            return codec, codec.body(gen, prompt=prompt)
        except UnsupportedFormatError as exc:
            if str(exc).startswith(label):
                raise
            raise UnsupportedFormatError(f"{label}: {exc}") from None

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
                exc.args = (f"{exc} (model {self.model.model_name})",)
            raise

    def _notify(self, event: RetryEvent) -> None:
        if self._progress is not None:
            self._progress(f"{self.model.model_name}: {event.describe()}")
        if self._on_retry is not None:
            self._on_retry(event)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
