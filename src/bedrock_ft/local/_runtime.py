"""The Bedrock runtime for imported models: InvokeModel, its streaming twin, Converse, ConverseStream."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from bedrock_ft.local._control import ControlPlane
from bedrock_ft.local._errors import ServiceError
from bedrock_ft.local._features import template_takes_tools
from bedrock_ft.local._formats import InvokeRequest, parse_invoke_body, response_body, stream_chunks
from bedrock_ft.local._pool import ModelPool
from bedrock_ft.local._store import ModelRecord
from bedrock_ft.local.engine import (
    Delta,
    LoadedModel,
    PromptTooLongError,
    SamplingParams,
    UnsupportedRequestError,
    chat_template_of,
)

__all__ = ["Runtime"]

log = logging.getLogger("bedrock_ft.local")

_STOP_REASON = {"stop": "end_turn", "length": "max_tokens"}


class Runtime:
    def __init__(self, control: ControlPlane, pool: ModelPool, *, max_tokens_limit: int) -> None:
        self.control = control
        self.pool = pool
        self.max_tokens_limit = max_tokens_limit

    def _model(self, model_id: str) -> ModelRecord:
        try:
            return self.control.model(model_id)
        except ServiceError:
            raise ServiceError(
                "ResourceNotFoundException", f"The model {model_id} doesn't exist or you can't access it."
            ) from None

    # --- InvokeModel -------------------------------------------------------------------------------

    def _request(self, params: dict[str, Any], *, stream: bool) -> tuple[ModelRecord, InvokeRequest]:
        record = self._model(params["modelId"])
        request = parse_invoke_body(
            params.get("body") or b"",
            record.invoke_format,
            max_tokens_limit=self.max_tokens_limit,
            stream=stream,
            api_formats=_api_formats(record.architecture),
        )
        if request.format.takes_messages and not record.instruct_supported:
            raise ServiceError(
                "ValidationException",
                "This model has no chat template, which the messages format needs; send a 'prompt'.",
            )
        if request.tools and not template_takes_tools(
            chat_template_of(self.control.store.weights_dir(record.id))
        ):
            # AWS's guide offers tool calling for GPT-OSS; a model whose template can't show it tools can't.
            raise ServiceError(
                "ValidationException",
                "Malformed input request: this model does not support tool calling: its chat template "
                "does not render 'tools' (imported models support tools for GPT-OSS).",
            )
        return record, request

    def _lease(self, record: ModelRecord) -> AbstractContextManager[LoadedModel]:
        return self.pool.use(record.id, self.control.store.weights_dir(record.id))

    def invoke(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The response body, and the headers Bedrock sends with it (token counts, latency)."""
        record, request = self._request(params, stream=False)
        started = time.perf_counter()
        with self._lease(record) as model:
            deltas = list(_generate(model, request))
        text = "".join(delta.text for delta in deltas)
        last = deltas[-1]
        headers = {
            "X-Amzn-Bedrock-Input-Token-Count": str(last.prompt_tokens),
            "X-Amzn-Bedrock-Output-Token-Count": str(last.completion_tokens),
            "X-Amzn-Bedrock-Invocation-Latency": str(int((time.perf_counter() - started) * 1000)),
        }
        return response_body(request, text, last, record.arn), headers

    def invoke_stream(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Checks the request, takes the model and computes the first chunk before returning, so that
        errors are plain error responses and an abandoned stream still releases the model."""
        record, request = self._request(params, stream=True)
        started = time.perf_counter()
        lease = self._lease(record)
        model = lease.__enter__()

        def chunks() -> Iterator[dict[str, Any]]:
            try:
                yield from stream_chunks(request, _generate(model, request), record.arn, started=started)
            finally:
                lease.__exit__(None, None, None)

        return _started(chunks())

    # --- Converse ----------------------------------------------------------------------------------

    def _converse_request(
        self, params: dict[str, Any]
    ) -> tuple[ModelRecord, list[dict[str, str]], SamplingParams]:
        from bedrock_ft.architectures import get_architecture

        record = self._model(params["modelId"])
        try:
            supported = get_architecture(record.architecture).supports_converse
        except Exception:
            supported = False
        if not supported:
            raise ServiceError(
                "ValidationException",
                f"The Converse API is not supported for {record.architecture} models; use InvokeModel.",
            )
        if not record.instruct_supported:
            raise ServiceError(
                "ValidationException", "This model has no chat template, which the Converse API needs."
            )
        for key in ("toolConfig", "guardrailConfig", "promptVariables", "outputConfig"):
            if key in params:
                raise ServiceError("ValidationException", f"{key} is not supported by imported models here.")
        messages: list[dict[str, str]] = []
        for index, block in enumerate(params.get("system") or []):
            if "text" not in block:
                raise ServiceError("ValidationException", f"system[{index}]: only text blocks are supported.")
            messages.append({"role": "system", "content": block["text"]})
        for index, message in enumerate(params.get("messages") or []):
            texts = []
            for part, content in enumerate(message["content"]):
                if "image" in content:
                    raise ServiceError(
                        "ValidationException",
                        f"messages[{index}].content[{part}]: image input needs a model with vision "
                        "(Qwen2-VL, Qwen2.5-VL, Mllama); this model takes text only.",
                    )
                if "text" not in content:
                    raise ServiceError(
                        "ValidationException", f"messages[{index}].content[{part}]: only text is supported."
                    )
                texts.append(content["text"])
            messages.append({"role": message["role"], "content": "".join(texts)})
        if not params.get("messages"):
            raise ServiceError("ValidationException", "messages must hold at least one message.")
        config = params.get("inferenceConfig") or {}
        extra = params.get("additionalModelRequestFields") or {}
        unknown = sorted(set(extra) - {"top_k", "seed"})
        if unknown:
            raise ServiceError(
                "ValidationException", f"additionalModelRequestFields: unknown field(s) {', '.join(unknown)}."
            )
        # Unset: "the maximum allowed value for the model" (botocore's InferenceConfiguration.maxTokens).
        max_tokens = int(config.get("maxTokens", self.max_tokens_limit))
        if max_tokens > self.max_tokens_limit:
            raise ServiceError("ValidationException", f"maxTokens must be at most {self.max_tokens_limit}.")
        for key, high in (("top_k", 100_000), ("seed", 2**63 - 1)):
            value = extra.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high
            ):
                message = (
                    f"additionalModelRequestFields.{key} must be an integer in [0, {high}], got {value!r}."
                )
                raise ServiceError("ValidationException", message)
        sampling = SamplingParams(
            max_new_tokens=max_tokens,
            temperature=float(config.get("temperature", 0.5)),
            # topP is in [0, 1] (botocore's shape): 0 is kept, and means the likeliest token only.
            top_p=float(config["topP"]) if config.get("topP") is not None else 0.9,
            top_k=int(extra.get("top_k") or 0),
            seed=extra.get("seed"),
            stop=tuple(config.get("stopSequences") or ()),
            add_special_tokens=False,
        )
        return record, messages, sampling

    def converse(self, params: dict[str, Any]) -> dict[str, Any]:
        record, messages, sampling = self._converse_request(params)
        started = time.perf_counter()
        with self._lease(record) as model:
            deltas = list(_checked(lambda: model.stream(_render(model, messages), sampling)))
        last = deltas[-1]
        return {
            "output": {
                "message": {"role": "assistant", "content": [{"text": "".join(d.text for d in deltas)}]}
            },
            "stopReason": _converse_stop(last),
            "usage": _converse_usage(last),
            "metrics": {"latencyMs": int((time.perf_counter() - started) * 1000)},
        }

    def converse_stream(self, params: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        record, messages, sampling = self._converse_request(params)
        started = time.perf_counter()
        lease = self._lease(record)
        model = lease.__enter__()

        def events() -> Iterator[tuple[str, dict[str, Any]]]:
            try:
                deltas = _checked(lambda: model.stream(_render(model, messages), sampling))
                first = next(deltas)  # errors surface before anything is sent
                yield "messageStart", {"role": "assistant"}
                last = Delta("")
                for delta in itertools.chain([first], deltas):
                    if delta.finish_reason is not None:
                        last = delta
                    elif delta.text:
                        yield "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": delta.text}}
                yield "contentBlockStop", {"contentBlockIndex": 0}
                yield "messageStop", {"stopReason": _converse_stop(last)}
                latency = int((time.perf_counter() - started) * 1000)
                yield "metadata", {"usage": _converse_usage(last), "metrics": {"latencyMs": latency}}
            finally:
                lease.__exit__(None, None, None)

        return _started(events())


def _started(items: Iterator[Any]) -> Iterator[Any]:
    """Run ``items`` up to its first element now: a failure raises here, in the request, and the
    generator is then suspended inside its ``try``, so dropping it still runs its ``finally``."""
    try:
        first = next(items)
    except StopIteration:
        return iter(())
    return itertools.chain([first], items)


def _render(model: LoadedModel, messages: Any, tools: Any = ()) -> str:
    from jinja2.exceptions import TemplateError

    try:
        return model.render_chat(list(messages), list(tools)) if tools else model.render_chat(list(messages))
    except TemplateError as exc:
        raise ServiceError(
            "ValidationException", f"The model's chat template refused the messages: {exc}"
        ) from None


def _checked(start: Any) -> Iterator[Delta]:
    """Start a model stream; a prompt over the context is the client's error, whenever it's found."""
    try:
        stream: Iterator[Delta] = start()
    except (PromptTooLongError, UnsupportedRequestError) as exc:
        raise ServiceError("ValidationException", str(exc)) from None
    return _mapped(stream)


def _mapped(stream: Iterator[Delta]) -> Iterator[Delta]:
    try:
        yield from stream
    except PromptTooLongError as exc:
        raise ServiceError("ValidationException", str(exc)) from None


def _generate(model: LoadedModel, request: InvokeRequest) -> Iterator[Delta]:
    prompt = request.prompt if request.prompt is not None else _render(model, request.messages, request.tools)
    return _checked(lambda: model.stream(prompt, request.params))


def _converse_stop(last: Delta) -> str:
    if last.stop_sequence is not None:
        return "stop_sequence"
    return _STOP_REASON.get(last.finish_reason or "stop", "end_turn")


def _converse_usage(last: Delta) -> dict[str, int]:
    return {
        "inputTokens": last.prompt_tokens,
        "outputTokens": last.completion_tokens,
        "totalTokens": last.prompt_tokens + last.completion_tokens,
    }


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def _api_formats(architecture: str) -> tuple[str, ...] | None:
    """The formats a registered family takes (None: unknown family, every format)."""
    from bedrock_ft.architectures import get_architecture
    from bedrock_ft.errors import RegistryError

    try:
        return tuple(f.value for f in get_architecture(architecture).api_formats)
    except RegistryError:
        return None
