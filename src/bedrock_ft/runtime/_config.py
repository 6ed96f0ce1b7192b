"""Settings of :class:`~bedrock_ft.runtime.ImportedModelClient`: format, generation defaults, retries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from bedrock_ft.aws import AwsConfig
from bedrock_ft.config import BaseConfig
from bedrock_ft.errors import ConfigError, RequestValidationError
from bedrock_ft.formats import FORMAT_NAMES

__all__ = ["API_FORMATS", "GenerationParams", "InvokeConfig", "generation_params"]

API_FORMATS: tuple[str, ...] = FORMAT_NAMES
"""InvokeModel body formats: the three of models imported after 2025-11-11, and the legacy native ones
(:data:`bedrock_ft.formats.FORMATS`)."""

_FORMAT_CHOICES = ("auto", *FORMAT_NAMES)
if TYPE_CHECKING:
    ApiFormatName = str
else:  # "auto" or a name of the formats table: the JSON schema and the error list them
    ApiFormatName = Literal[_FORMAT_CHOICES]

MAX_STOP_SEQUENCES = 16


class GenerationParams(BaseConfig):
    """Sampling settings of one request. Names are the library's; each codec maps them to its format's
    own (``max_tokens`` is sent as ``max_gen_len`` in the Bedrock and Llama bodies)."""

    max_tokens: int = Field(default=512, ge=1, le=1_000_000, description="Most tokens to generate.")
    temperature: float | None = Field(
        default=None,
        ge=0.0,
        le=2.0,
        description="Sampling temperature; 0 is greedy. None: the model's default.",
    )
    top_p: float | None = Field(
        default=None, gt=0.0, le=1.0, description="Nucleus sampling mass. None: the model's default."
    )
    top_k: int | None = Field(default=None, ge=1, description="Sample from the k likeliest tokens only.")
    stop: tuple[str, ...] = Field(
        default=(), description=f"Stop sequences (at most {MAX_STOP_SEQUENCES}, none empty)."
    )
    seed: int | None = Field(default=None, ge=0, description="Sampling seed, where the format takes one.")

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(value)}")
        if any(not s for s in value):
            raise ValueError("stop sequences must not be empty")
        return value


class InvokeConfig(BaseConfig):
    """How :class:`~bedrock_ft.runtime.ImportedModelClient` calls an imported model."""

    api_format: ApiFormatName = Field(
        default="auto",
        description="InvokeModel body format. auto: the native Mistral or Llama body for models imported "
        "before 2025-11-11, otherwise BedrockCompletion for complete() and OpenAIChatCompletion for "
        "chat() (a prompt rendered with the training chat template when Bedrock found none).",
    )
    generation: GenerationParams = Field(
        default_factory=GenerationParams,
        description="Default sampling settings; each call can override them.",
    )
    chat_template: str | None = Field(
        default=None,
        description="Jinja chat template for chat() sent as a prompt. Default: the template the model was "
        "trained with, carried in its ImportedModel artifact.",
    )
    cold_start_timeout: float = Field(
        default=300.0,
        ge=0,
        description="Seconds to keep retrying ModelNotReadyException (a scaled-to-zero model being "
        "restored). AWS suggests allowing about 5 minutes.",
    )
    max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Attempts per request on ThrottlingException, ServiceUnavailableException and "
        "ModelTimeoutException. Validation errors are never retried.",
    )
    initial_backoff: float = Field(
        default=0.5, gt=0, description="First retry wait in seconds; doubles per retry, with full jitter."
    )
    max_backoff: float = Field(default=20.0, gt=0, description="Longest single retry wait, in seconds.")
    adaptive_rate_limit: bool = Field(
        default=True,
        description="After a ThrottlingException, slow every thread sharing the client down together "
        "(botocore's adaptive client-side rate limiter) instead of letting each retry into the limit.",
    )
    max_concurrency: int = Field(
        default=8, ge=1, le=256, description="Requests in flight at once in batches and async calls."
    )
    aws: AwsConfig = Field(default_factory=AwsConfig, description="Region, profile, endpoints.")

    hash_exclude = frozenset(
        {"aws", "cold_start_timeout", "max_attempts", "initial_backoff", "max_backoff", "adaptive_rate_limit"}
    )


def generation_params(
    defaults: GenerationParams, overrides: Mapping[str, Any], *, call: str
) -> GenerationParams:
    """``defaults`` with a call's keyword arguments applied. A bad value raises
    :class:`RequestValidationError` naming every bad parameter, before anything is sent."""
    if not overrides:
        return defaults
    try:
        return defaults.replace(**overrides)
    except ConfigError as exc:
        problems = "; ".join(str(p) for p in exc.problems)
        raise RequestValidationError(f"{call}: invalid parameter(s): {problems}") from None
