"""What :class:`~bedrock_ft.runtime.ImportedModelClient` returns: completions, usage, batches, retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bedrock_ft.errors import BedrockFTError, MalformedResponseError

__all__ = ["BatchItem", "BatchResult", "Completion", "RetryEvent", "TokenLogprob", "ToolCall", "Usage"]


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log probability, and the likeliest alternatives at its position."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()
    """``(token, logprob)`` pairs, likeliest first (as many as the call asked for)."""


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for (OpenAI's ``tool_calls``)."""

    id: str
    name: str
    arguments: str
    """The arguments as the model wrote them: JSON text."""

    def parsed_arguments(self) -> Any:
        """:attr:`arguments` as JSON; :class:`MalformedResponseError` when the model wrote invalid JSON."""
        try:
            return json.loads(self.arguments)
        except ValueError as exc:
            raise MalformedResponseError(
                f"tool call {self.name}: the arguments are not JSON ({exc}): {self.arguments[:200]!r}"
            ) from None


@dataclass(frozen=True)
class Completion:
    """One answer. ``str(completion)`` is its text."""

    text: str
    finish_reason: str | None
    """``"stop"`` (the model ended or met a stop sequence), ``"length"`` (max tokens), or the service's own
    word for anything else; None when the format does not say."""
    input_tokens: int | None
    output_tokens: int | None
    latency_s: float
    """Seconds from sending the request to the whole answer, retries included."""
    api_format: str
    """The format sent: BedrockCompletion, OpenAICompletion, OpenAIChatCompletion, mistral, llama or
    Converse."""
    model_id: str
    attempts: int = 1
    """Requests sent for this answer: 1 plus the retries (cold start, throttling)."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The response body as the service sent it (the last chunk's, for a stream)."""
    logprobs: tuple[TokenLogprob, ...] | None = field(default=None, repr=False)
    """Per-token log probabilities, when the call asked for them (``logprobs=``)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """The functions the model asked to call, when the call offered ``tools``."""
    response_format: Any = field(default=None, repr=False, compare=False)
    """The ``response_format`` the call asked for: what :attr:`parsed` reads the text as."""

    def __str__(self) -> str:
        return self.text

    def as_message(self) -> dict[str, Any]:
        """The answer as the assistant's turn of a conversation, its tool calls included in OpenAI's
        shape: append it, then a ``{"role": "tool", "tool_call_id": call.id, "content": ...}`` message
        per call, and call ``chat()`` again."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message

    @property
    def parsed(self) -> Any:
        """The answer as JSON (a call with ``response_format``): a dict, or an instance of the pydantic
        model given. :class:`MalformedResponseError` when the text isn't valid JSON or doesn't validate
        (an answer cut at ``max_tokens`` is the usual cause: the error says so)."""
        hint = " (the answer was cut at max_tokens; raise it)" if self.finish_reason == "length" else ""
        model = self.response_format if isinstance(self.response_format, type) else None
        try:
            if model is not None and hasattr(model, "model_validate_json"):
                return model.model_validate_json(self.text)
            return json.loads(self.text)
        except ValueError as exc:  # json's and pydantic's errors are ValueErrors
            raise MalformedResponseError(
                f"the answer is not the JSON asked for{hint}: {exc}: {self.text[:200]!r}"
            ) from None


RetryKind = Literal["cold_start", "throttled", "unavailable", "timeout", "dropped"]


@dataclass(frozen=True)
class RetryEvent:
    """A retry about to happen: passed to the client's ``on_retry`` callback."""

    kind: RetryKind
    error: BedrockFTError
    attempt: int
    """The attempt that failed (1 for the first request)."""
    wait_s: float
    """Seconds until the next attempt."""
    elapsed_s: float
    """Seconds since the first attempt."""
    operation: str

    def describe(self) -> str:
        what = {
            "cold_start": "model not ready (cold start, Bedrock is restoring it)",
            "throttled": "throttled",
            "unavailable": "service unavailable",
            "timeout": "model timed out",
        }[self.kind]
        return f"{what}: retry {self.attempt} in {self.wait_s:.1f} s ({self.elapsed_s:.0f} s so far)"


@dataclass
class Usage:
    """Tokens and requests, counted per client and per batch."""

    requests: int = 0
    """Answers received."""
    input_tokens: int = 0
    output_tokens: int = 0
    retries: int = 0
    """Requests sent again after a cold start, throttling or a transient failure."""
    errors: int = 0
    """Calls that failed for good."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, completion: Completion | None = None, *, retries: int = 0, error: bool = False) -> None:
        with self._lock:
            self.retries += retries
            if error:
                self.errors += 1
            if completion is not None:
                self.requests += 1
                self.input_tokens += completion.input_tokens or 0
                self.output_tokens += completion.output_tokens or 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def snapshot(self) -> Usage:
        with self._lock:
            return Usage(self.requests, self.input_tokens, self.output_tokens, self.retries, self.errors)

    def as_dict(self) -> dict[str, int]:
        copy = self.snapshot()
        return {
            "requests": copy.requests,
            "input_tokens": copy.input_tokens,
            "output_tokens": copy.output_tokens,
            "total_tokens": copy.total_tokens,
            "retries": copy.retries,
            "errors": copy.errors,
        }


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch and its outcome: a completion, or the error it ended with."""

    index: int
    input: Any
    completion: Completion | None = None
    error: BedrockFTError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def text(self) -> str | None:
        return self.completion.text if self.completion is not None else None


@dataclass(frozen=True)
class BatchResult(Sequence[BatchItem]):
    """Every item of a batch, in input order, each with its completion or its error."""

    items: tuple[BatchItem, ...]
    usage: Usage
    seconds: float
    max_concurrency: int

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: Any) -> Any:
        return self.items[index]

    def __iter__(self) -> Iterator[BatchItem]:
        return iter(self.items)

    @property
    def texts(self) -> list[str | None]:
        """The answers in input order; None where the item failed."""
        return [item.text for item in self.items]

    @property
    def errors(self) -> list[BatchItem]:
        return [item for item in self.items if not item.ok]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def requests_per_second(self) -> float:
        return len(self.items) / self.seconds if self.seconds > 0 else 0.0

    def raise_for_errors(self) -> None:
        """Raise the first item's error, saying how many items failed."""
        failed = self.errors
        if failed:
            first = failed[0]
            raise type(first.error)(  # type: ignore[misc]
                f"{len(failed)} of {len(self.items)} item(s) failed; item {first.index}: {first.error}"
            ) from first.error
