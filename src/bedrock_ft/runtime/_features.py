"""What a call can ask of a model imported after 2025-11-11 beyond text: structured output, log
probabilities, tools and images (AWS's "Advanced API features for imported models").

A call passes them as keyword arguments next to the sampling settings (``response_format=``,
``logprobs=``, ``tools=``, ``tool_choice=``); each codec puts them in its body, in its format's shape, or
refuses them before anything is sent where the format has no place for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bedrock_ft.errors import RequestValidationError

__all__ = ["FEATURE_KEYS", "MAX_TOP_LOGPROBS", "Features", "split_features"]

FEATURE_KEYS = ("response_format", "logprobs", "tools", "tool_choice")
MAX_TOP_LOGPROBS = 20
"""OpenAI's chat completions API's cap on ``top_logprobs`` (its completions API caps ``logprobs`` at 5)."""


@dataclass(frozen=True)
class Features:
    """The features one call asks for; the default asks for none."""

    schema: Mapping[str, Any] | None = None
    """The JSON Schema the answer must match (``response_format``); ``{}`` with :attr:`json_object`."""
    schema_name: str = "response"
    json_object: bool = False
    """Any JSON object (``response_format="json_object"``)."""
    model_class: Any = None
    """The pydantic model the schema came from: :attr:`Completion.parsed` validates into it."""
    logprobs: int | None = None
    """None: no log probabilities; N: each token's, with the N likeliest alternatives."""
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: Any = None

    @property
    def structured(self) -> bool:
        return self.schema is not None or self.json_object

    def names(self) -> list[str]:
        """The features asked for, by parameter name (for error messages)."""
        asked = []
        if self.structured:
            asked.append("response_format")
        if self.logprobs is not None:
            asked.append("logprobs")
        if self.tools:
            asked.append("tools")
        return asked


def split_features(params: Mapping[str, Any], *, call: str) -> tuple[Features, dict[str, Any]]:
    """The features among a call's keyword arguments, checked, and the sampling settings left."""
    rest = {k: v for k, v in params.items() if k not in FEATURE_KEYS}
    if len(rest) == len(params):
        return Features(), rest
    schema, name, json_object, model_class = _response_format(params.get("response_format"), call)
    return Features(
        schema=schema,
        schema_name=name,
        json_object=json_object,
        model_class=model_class,
        logprobs=_logprobs(params.get("logprobs"), call),
        tools=_tools(params.get("tools"), call),
        tool_choice=params.get("tool_choice"),
    ), rest


def _response_format(value: Any, call: str) -> tuple[Mapping[str, Any] | None, str, bool, Any]:
    """``(schema, name, json_object, pydantic class)`` from a pydantic model class, a JSON Schema, OpenAI's
    ``{"type": "json_schema", "json_schema": {...}}``, or ``"json_object"``."""
    if value is None:
        return None, "response", False, None
    if value in ("json_object", {"type": "json_object"}):
        return None, "response", True, None
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return value.model_json_schema(), value.__name__, False, value
    if isinstance(value, Mapping):
        if value.get("type") == "json_schema" and isinstance(value.get("json_schema"), Mapping):
            spec = value["json_schema"]
            schema = spec.get("schema") if isinstance(spec.get("schema"), Mapping) else spec
            return dict(schema), str(spec.get("name") or "response"), False, None
        if value:
            return dict(value), str(value.get("title") or "response"), False, None
    raise RequestValidationError(
        f"{call}: response_format must be a pydantic model class, a JSON Schema (a dict) or "
        f"'json_object', got {value!r}"
    )


def _logprobs(value: Any, call: str) -> int | None:
    if value is None or value is False:
        return None
    if value is True:
        return 0
    if not isinstance(value, int) or not 0 <= value <= MAX_TOP_LOGPROBS:
        raise RequestValidationError(
            f"{call}: logprobs must be True or the number of alternatives per token, 0 to "
            f"{MAX_TOP_LOGPROBS}, got {value!r}"
        )
    return value


def _tools(value: Any, call: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise RequestValidationError(f"{call}: tools must be a list of OpenAI function tools")
    for index, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not function.get("name") or tool.get("type") != "function":
            raise RequestValidationError(
                f"{call}: tools[{index}] must be {{'type': 'function', 'function': {{'name': ..., "
                "'parameters': {...}}}"
            )
    return tuple(value)
