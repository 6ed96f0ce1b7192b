"""The InvokeModel body formats of imported models, as one table.

The client's codecs, its format choice, ``InvokeConfig``, the architecture registry and the local
Bedrock's request checks all read this table, so the client and the emulator can't drift apart: a
format, a parameter or a default changes here or nowhere.

Models imported after 2025-11-11 take the three newer formats whatever their family (the last one
only with a chat template); models imported earlier take their family's native body only. Converse is
an API of its own, not a body format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from types import MappingProxyType

__all__ = [
    "CONVERSE",
    "FORMATS",
    "FORMAT_NAMES",
    "LEGACY_CUTOFF",
    "NATIVE_FORMATS",
    "NEW_FORMATS",
    "SAMPLING_SETTINGS",
    "ApiFormat",
    "BodyFormat",
    "get_format",
]

LEGACY_CUTOFF = datetime(2025, 11, 11, tzinfo=timezone.utc)
"""Models imported after this date take the newer formats; earlier ones their family's native body."""

CONVERSE = "Converse"

SAMPLING_SETTINGS = ("temperature", "top_p", "top_k", "stop", "seed")
"""The optional sampling settings of :class:`~bedrock_ft.runtime.GenerationParams`, by library name."""

_ALL_SAMPLING = MappingProxyType({key: key for key in SAMPLING_SETTINGS})

# Keys OpenAI's formats accept beyond the sampling settings; the local Bedrock accepts (and checks) them.
# ``logprobs`` and ``response_format`` are features of models imported after 2025-11-11 (AWS's "Advanced
# API features for imported models"); the client sends them when a call asks for them.
_OPENAI_KEYS = frozenset(
    {
        "model",
        "n",
        "stream",
        "stream_options",
        "user",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "response_format",
    }
)
# Chat only: top_logprobs (with logprobs: true), tools and tool_choice (OpenAI's chat completions API).
_CHAT_KEYS = frozenset(
    {"max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls"}
)


class ApiFormat(str, Enum):
    """The body formats of models imported after 2025-11-11."""

    BEDROCK_COMPLETION = "BedrockCompletion"
    OPENAI_COMPLETION = "OpenAICompletion"
    OPENAI_CHAT_COMPLETION = "OpenAIChatCompletion"


@dataclass(frozen=True)
class BodyFormat:
    """One InvokeModel body format: what a request carries and where the answer is in a response."""

    name: str
    """The name ``InvokeConfig.api_format`` and the codecs use."""
    label: str
    """How error messages name it."""
    takes_messages: bool
    """True: the body carries ``messages`` (a chat); False: a ``prompt``."""
    max_tokens_key: str
    """The body key that caps generated tokens."""
    sampling: Mapping[str, str]
    """The optional sampling settings it takes: library name -> body key."""
    text_path: str
    """Where the generated text is in a response, e.g. ``outputs[0].text``."""
    stop_reason_path: str
    """Where the stop reason is in a response."""
    defaults: tuple[int, float, float]
    """What the service uses when a request leaves them out: max tokens, temperature, top_p."""
    extra_keys: frozenset[str] = field(default=frozenset())
    """Other request keys the service accepts."""
    legacy: bool = False
    """A family's native body: all a model imported before 2025-11-11 takes."""

    @property
    def input_key(self) -> str:
        return "messages" if self.takes_messages else "prompt"

    @property
    def request_params(self) -> tuple[str, ...]:
        """The keys the client sends: the input, the token cap and the sampling settings."""
        return (self.input_key, self.max_tokens_key, *self.sampling.values())

    @property
    def accepted_keys(self) -> frozenset[str]:
        """Every key the service accepts in a request of this format."""
        return frozenset(self.request_params) | self.extra_keys

    @property
    def max_tokens_param(self) -> str:
        """The same as :attr:`max_tokens_key` (the name ``NativeFormat`` used)."""
        return self.max_tokens_key


_FORMATS = (
    BodyFormat(
        name="BedrockCompletion",
        label="BedrockCompletion",
        takes_messages=False,
        max_tokens_key="max_gen_len",
        sampling=_ALL_SAMPLING,
        text_path="generation",
        stop_reason_path="stop_reason",
        defaults=(512, 0.5, 0.9),
        # AWS's guide: BedrockCompletion takes response_format (json_object and json_schema) only.
        extra_keys=frozenset({"response_format"}),
    ),
    BodyFormat(
        name="OpenAICompletion",
        label="OpenAICompletion",
        takes_messages=False,
        max_tokens_key="max_tokens",
        sampling=_ALL_SAMPLING,
        text_path="choices[0].text",
        stop_reason_path="choices[0].finish_reason",
        defaults=(16, 1.0, 1.0),  # OpenAI's
        extra_keys=_OPENAI_KEYS | {"echo"},
    ),
    BodyFormat(
        name="OpenAIChatCompletion",
        label="OpenAIChatCompletion",
        takes_messages=True,
        max_tokens_key="max_tokens",
        sampling=_ALL_SAMPLING,
        text_path="choices[0].message.content",
        stop_reason_path="choices[0].finish_reason",
        defaults=(512, 1.0, 1.0),
        extra_keys=_OPENAI_KEYS | _CHAT_KEYS,
    ),
    BodyFormat(
        name="mistral",
        label="native Mistral",
        takes_messages=False,
        max_tokens_key="max_tokens",
        sampling=MappingProxyType({k: k for k in ("temperature", "top_p", "top_k", "stop")}),
        text_path="outputs[0].text",
        stop_reason_path="outputs[0].stop_reason",
        defaults=(512, 0.5, 0.9),
        legacy=True,
    ),
    BodyFormat(
        name="llama",
        label="native Llama",
        takes_messages=False,
        max_tokens_key="max_gen_len",
        sampling=MappingProxyType({k: k for k in ("temperature", "top_p")}),
        text_path="generation",
        stop_reason_path="stop_reason",
        defaults=(512, 0.5, 0.9),
        legacy=True,
    ),
)

FORMATS: Mapping[str, BodyFormat] = MappingProxyType({f.name: f for f in _FORMATS})
"""Every body format, by name."""

NEW_FORMATS: tuple[str, ...] = tuple(f.name for f in _FORMATS if not f.legacy)
"""The formats of models imported after 2025-11-11 (the values of :class:`ApiFormat`)."""

NATIVE_FORMATS: tuple[str, ...] = tuple(f.name for f in _FORMATS if f.legacy)
"""The families' native bodies, for models imported earlier."""

FORMAT_NAMES: tuple[str, ...] = NEW_FORMATS + NATIVE_FORMATS


def get_format(name: str) -> BodyFormat:
    """The format called ``name`` (``KeyError`` listing the known ones otherwise)."""
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown body format {name!r}; known: {', '.join(FORMAT_NAMES)}") from None
