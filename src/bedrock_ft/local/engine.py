"""Inference engines for the local Bedrock.

The server talks to an :class:`InferenceEngine`, which loads a model directory into a
:class:`LoadedModel`. Streaming is the one primitive: a non-streaming call collects the stream.
:class:`TransformersEngine` is the built-in (CPU or GPU); another engine, such as vLLM, plugs in
by implementing the two Protocols.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = [
    "Delta",
    "InferenceEngine",
    "LoadedModel",
    "PromptTooLongError",
    "SamplingParams",
    "TokenLogprob",
    "TransformersEngine",
    "UnsupportedRequestError",
    "chat_template_of",
]

FinishReason = Literal["stop", "length"]


class PromptTooLongError(ValueError):
    """The prompt and the tokens asked for don't fit in the model's context."""


class UnsupportedRequestError(ValueError):
    """The request asks for something this model or engine can't do (a bad JSON schema, structured
    output without its library): the client's error, a ``ValidationException``."""


@dataclass(frozen=True)
class SamplingParams:
    """What a request asks of generation, whatever its body format."""

    max_new_tokens: int
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    top_k: int = 0
    """0 means no top-k cut."""
    stop: tuple[str, ...] = ()
    seed: int | None = None
    add_special_tokens: bool = True
    """Completion prompts get the tokenizer's BOS; rendered chat templates already carry theirs."""
    logprobs: int | None = None
    """None: no log probabilities. N: each generated token's, with the N likeliest alternatives."""
    json_schema: str | None = None
    """A JSON Schema, as JSON text: the output is constrained to match it."""


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token and its log probability under the model, with the likeliest alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass
class Delta:
    """A piece of generated text. The last one has ``finish_reason`` and the token counts set."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_sequence: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    """On the last delta, when the request asked for them: one entry per generated token."""


class LoadedModel(Protocol):
    chat_template: str | None

    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None
    ) -> str:
        """The prompt text for a chat, by the model's own chat template, ready for the assistant; with
        ``tools`` where the template renders them."""
        ...

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[Delta]: ...

    def close(self) -> None: ...


class InferenceEngine(Protocol):
    name: str

    def load(self, model_dir: Path) -> LoadedModel: ...


def chat_template_of(model_dir: Path) -> str | None:
    """The chat template Bedrock would use: ``chat_template`` in tokenizer_config.json, where AWS's guide
    and its Converse samples put it. A separate ``chat_template.jinja`` is not read: no AWS source says
    Bedrock reads one (preflight warns about a template that lives only there)."""
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
        if isinstance(template, list):  # named templates: take "default"
            for item in template:
                if isinstance(item, dict) and item.get("name") == "default":
                    return str(item.get("template"))
    return None


@dataclass
class TransformersEngine:
    """transformers on CPU or GPU. Requests that arrive together are decoded as one batch."""

    device: str = "auto"
    max_batch: int = 8
    """Most requests decoded side by side (1: one at a time)."""
    batch_window: float = 0.01
    """Seconds to wait after a request for others to join its batch."""
    name: str = field(default="transformers", init=False)

    def load(self, model_dir: Path) -> LoadedModel:
        from bedrock_ft.local._transformers import TransformersModel

        return TransformersModel(
            model_dir, self.device, max_batch=self.max_batch, batch_window=self.batch_window
        )
