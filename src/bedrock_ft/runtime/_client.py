"""ImportedModelClient: the Bedrock client for imported models that applications use.

Light (boto3, no torch), thread-safe (one instance can serve every thread of an application), and
the same code against AWS and against the local Bedrock. docs/invoking.md has the details.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from bedrock_ft.artifacts import ImportedModel
from bedrock_ft.errors import (
    ArtifactError,
    RequestValidationError,
    UnsupportedFormatError,
    translate_client_errors,
)
from bedrock_ft.formats import CONVERSE
from bedrock_ft.progress import Progress
from bedrock_ft.runtime import _formats
from bedrock_ft.runtime._chat import (
    ChatRenderer,
    check_messages,
    check_prompt,
    has_images,
    has_tool_turns,
)
from bedrock_ft.runtime._concurrent import ConcurrentCalls, Messages
from bedrock_ft.runtime._config import GenerationParams, InvokeConfig, generation_params
from bedrock_ft.runtime._converse import converse_request, decode_converse, decode_converse_event
from bedrock_ft.runtime._features import Features, split_features
from bedrock_ft.runtime._results import Completion
from bedrock_ft.runtime._retry import OnRetry
from bedrock_ft.runtime._stream import TextStream, invoke_stream_decoder
from bedrock_ft.runtime.codecs import Codec, get_codec

__all__ = ["ImportedModelClient"]


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
        model: ImportedModel | str | os.PathLike[str],
        config: InvokeConfig | None = None,
        *,
        on_retry: OnRetry | None = None,
        progress: Progress | None = None,
    ) -> None:
        model = _imported_model(model)
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
        aws = config.aws if config.aws.region else config.aws.replace(region=region)
        super().__init__(config, aws, on_retry=on_retry, progress=progress)
        self.model = model
        self.model_id = str(model.model_arn)
        """The modelId every request names: the imported model's ARN."""
        self.model_name = model.model_name
        self.architecture = model.registered_architecture()
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
        progress: Progress | None = None,
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
        if describe:  # the training template and its tokens come from the files Bedrock imported
            from bedrock_ft.importing import ImportedModels

            model = ImportedModels(aws, progress=progress).describe(arn)
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
    def formats(self) -> tuple[str, ...]:
        """The formats this model takes (``Converse`` included where the Converse API works)."""
        return self.model.accepted_formats()

    def __repr__(self) -> str:
        return f"ImportedModelClient({self.model.model_name!r}, {self.model_id!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        """A client travels (pickle, Ray, multiprocessing) as what rebuilds it, its model and config: the
        copy opens its own connections and counts its own usage; callbacks stay behind."""
        return (type(self), (self.model, self.config))

    # --- the calls ----------------------------------------------------------------------------------

    def complete(self, prompt: str, *, api_format: str | None = None, **params: Any) -> Completion:
        """Complete ``prompt`` as it is (no chat template applied). ``params``: max_tokens, temperature,
        top_p, top_k, stop, seed; they override ``InvokeConfig.generation``. Models imported after
        2025-11-11 also take ``response_format`` (a pydantic model class, a JSON Schema or
        ``"json_object"``; read the answer with ``completion.parsed``) and ``logprobs`` (True, or the
        number of alternatives per token; ``completion.logprobs``)."""
        codec, body, features = self._prepare("complete", prompt, api_format, params)
        return _answered(self._invoke(codec, body), features)

    def chat(self, messages: Messages, *, api_format: str | None = None, **params: Any) -> Completion:
        """Answer a conversation (``[{"role": "user", "content": "..."}]``). Sent as messages where
        Bedrock has the model's chat template; otherwise rendered here with the training template.

        Besides :meth:`complete`'s parameters, ``tools`` (OpenAI function tools; ``tool_choice``) offers
        functions to call (``completion.tool_calls``), and a message's content may hold ``image_url``
        parts (a base64 data URL) for the vision families: both go as OpenAIChatCompletion messages."""
        codec, body, features = self._prepare("chat", messages, api_format, params)
        return _answered(self._invoke(codec, body), features)

    def stream(
        self, prompt_or_messages: str | Messages, *, api_format: str | None = None, **params: Any
    ) -> TextStream:
        """Like :meth:`complete` (a string) or :meth:`chat` (messages), but yields text chunks as they
        come. ``stream.completion`` holds the whole answer once the iteration ends."""
        call: _formats.Call = "complete" if isinstance(prompt_or_messages, str) else "chat"
        codec, body, features = self._prepare(call, prompt_or_messages, api_format, params)
        if features.tools:
            raise UnsupportedFormatError("stream(): tools are offered by chat(), not stream()")
        runtime = self._client()
        payload = json.dumps(body).encode("utf-8")

        def send() -> dict[str, Any]:
            response: dict[str, Any] = runtime.invoke_model_with_response_stream(
                modelId=self.model_id, body=payload, contentType="application/json", accept="application/json"
            )
            return response

        operation = "InvokeModelWithResponseStream"
        decoder = invoke_stream_decoder(codec)
        return self._open_stream(
            send, operation, decoder, codec.name, "body", response_format=_spec(features)
        )

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
            codec, body, _ = self._prepare("chat", [{"role": "user", "content": "Hello"}], None, params)
        else:
            codec, body, _ = self._prepare("complete", "Hello", None, params)
        self._invoke(codec, body, config)
        return time.perf_counter() - started

    # --- internals ------------------------------------------------------------------------------------

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
        features, params = split_features(params, call=call)
        if features.names():
            raise UnsupportedFormatError(
                f"{call}: {', '.join(features.names())} go with InvokeModel's formats here: use chat()"
            )
        if has_tool_turns(checked):
            raise UnsupportedFormatError(
                f"{call}: tool calls and tool results go as OpenAIChatCompletion messages: use chat() "
                "(Converse's toolUse and toolResult blocks are not sent by converse())"
            )
        gen = generation_params(self.config.generation, params, call=call)
        if CONVERSE not in self.formats:
            arch = self.model.architecture or "this"
            reason = (
                "Bedrock found no chat template in it"
                if self.model.instruct_supported is False
                else f"Bedrock does not offer the Converse API for {arch} models"
            )
            raise UnsupportedFormatError(
                f"{call}: {self.model.model_name}: {reason}; use chat() or complete()"
            )
        if self._renderer is not None and not has_images(checked):
            self._renderer.render(checked, call=call)  # a refused role sequence fails here
        return converse_request(checked, gen, system)

    def _codec_for(self, call: _formats.Call, api_format: str | None) -> Codec:
        """The codec a call uses, or UnsupportedFormatError before anything is sent."""
        label = f"{call}()"
        requested = api_format or self.config.api_format
        try:
            return get_codec(_formats.choose_format(self.model, requested, call))
        except UnsupportedFormatError as exc:
            raise UnsupportedFormatError(f"{label}: {exc}") from None

    def _prepare(
        self, call: _formats.Call, payload: Any, api_format: str | None, params: Mapping[str, Any]
    ) -> tuple[Codec, dict[str, Any], Features]:
        """Check everything and build the body: nothing bad is sent."""
        label = f"{call}()"
        features, params = split_features(params, call=label)
        gen: GenerationParams = generation_params(self.config.generation, params, call=label)
        codec = self._codec_for(call, api_format)
        try:
            if call == "complete":
                return (
                    codec,
                    codec.body(gen, prompt=check_prompt(payload, call=label), features=features),
                    features,
                )
            messages = check_messages(payload, call=label)
            if codec.takes_messages:
                plain = not has_images(messages) and not has_tool_turns(messages)
                if self._renderer is not None and plain:
                    self._renderer.render(messages, call=label)  # a refused role sequence fails here
                return codec, codec.body(gen, messages=messages, features=features), features
            if has_images(messages):
                raise UnsupportedFormatError(
                    f"image input goes only in OpenAIChatCompletion messages; {codec.name} sends a prompt"
                )
            if has_tool_turns(messages):
                raise UnsupportedFormatError(
                    f"tool calls and tool results go only in OpenAIChatCompletion messages; {codec.name} "
                    "sends a prompt"
                )
            prompt = self._need_renderer(label).as_prompt(messages, call=label)
            return codec, codec.body(gen, prompt=prompt, features=features), features
        except UnsupportedFormatError as exc:
            if str(exc).startswith(label):
                raise
            raise UnsupportedFormatError(f"{label}: {exc}") from None


def _spec(features: Features) -> Any:
    """What :attr:`Completion.parsed` reads the text as: the pydantic class, the schema, or None."""
    if not features.structured:
        return None
    return features.model_class or features.schema or "json_object"


def _answered(completion: Completion, features: Features) -> Completion:
    """The completion, told how to read its text as JSON where the call asked for structured output."""
    spec = _spec(features)
    return completion if spec is None else dataclasses.replace(completion, response_format=spec)


def _imported_model(value: Any) -> ImportedModel:
    """The model a client is made for: an ImportedModel, or its manifest (or the directory holding it)."""
    if isinstance(value, str) and value.startswith("arn:"):
        raise ArtifactError(f"{value} is an ARN: use ImportedModelClient.from_arn(arn)")
    try:
        found = ImportedModel.from_input(value)
    except ArtifactError as exc:
        raise ArtifactError(
            f"ImportedModelClient takes an ImportedModel (BedrockImporter.import_model's result) or its "
            f"manifest: {exc}; for an ARN use ImportedModelClient.from_arn(arn)"
        ) from None
    return found or ImportedModel.read(value)  # a path without a manifest: read() says so
