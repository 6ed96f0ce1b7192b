"""What a call can ask of a model imported after 2025-11-11 beyond text: structured output, log
probabilities, tools and images (AWS's "Advanced API features for imported models").

A call passes them as keyword arguments next to the sampling settings (``response_format=``,
``logprobs=``, ``tools=``, ``tool_choice=``); each codec puts them in its body, in its format's shape, or
refuses them before anything is sent where the format has no place for them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bedrock_ft.errors import RequestValidationError

__all__ = ["FEATURE_KEYS", "MAX_TOP_LOGPROBS", "Features", "check_schema", "split_features"]

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
    tools = _tools(params.get("tools"), call)
    return Features(
        schema=schema,
        schema_name=name,
        json_object=json_object,
        model_class=model_class,
        logprobs=_logprobs(params.get("logprobs"), call),
        tools=tools,
        tool_choice=_tool_choice(params.get("tool_choice"), tools, call),
    ), rest


def _response_format(value: Any, call: str) -> tuple[Mapping[str, Any] | None, str, bool, Any]:
    """``(schema, name, json_object, pydantic class)`` from a pydantic model class, a JSON Schema, OpenAI's
    ``{"type": "json_schema", "json_schema": {...}}``, or ``"json_object"``."""
    if value is None:
        return None, "response", False, None
    if value in ("json_object", {"type": "json_object"}):
        return None, "response", True, None
    if value in ("text", {"type": "text"}):
        raise RequestValidationError(
            f"{call}: response_format {value!r} is the default (free text): leave response_format out"
        )
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        schema = value.model_json_schema()
        check_schema(schema, call=call)
        return schema, value.__name__, False, value
    if isinstance(value, Mapping) and value.get("type") == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not spec:
            raise RequestValidationError(
                f"{call}: response_format.json_schema must be a JSON Schema, or OpenAI's "
                f"{{'name': ..., 'schema': {{...}}}}; got {spec!r}"
            )
        if "schema" in spec:  # OpenAI's wrapper; otherwise the schema itself, as AWS's example sends it
            if not isinstance(spec["schema"], Mapping):
                raise RequestValidationError(
                    f"{call}: response_format.json_schema.schema must be a JSON Schema (a dict), "
                    f"got {type(spec['schema']).__name__}"
                )
            schema = dict(spec["schema"])
        else:
            schema = dict(spec)
        check_schema(schema, call=call)
        return schema, str(spec.get("name") or "response"), False, None
    if isinstance(value, Mapping) and value:
        check_schema(value, call=call)
        return dict(value), str(value.get("title") or "response"), False, None
    raise RequestValidationError(
        f"{call}: response_format must be a pydantic model class, a JSON Schema (a dict) or "
        f"'json_object', got {value!r}"
    )


JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SUBSCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def check_schema(schema: Any, *, call: str, path: str = "response_format") -> None:
    """The structure of a JSON Schema, checked before it is sent: :class:`RequestValidationError` naming
    the first bad keyword by its path (``response_format.properties.age.type``). The service compiles
    the schema itself; this catches what is plainly not a schema without a round trip."""

    def bad(where: str, what: str, got: Any) -> RequestValidationError:
        return RequestValidationError(f"{call}: {where} must be {what}, got {got!r}")

    if isinstance(schema, bool):  # true / false are schemas too
        return
    if not isinstance(schema, Mapping):
        raise bad(path, "a JSON Schema (an object)", schema)
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or any(k not in JSON_TYPES for k in kinds):
            raise bad(f"{path}.type", f"one of {', '.join(JSON_TYPES)} (or a list of them)", kind)
    if "required" in schema and (
        not isinstance(schema["required"], list) or not all(isinstance(r, str) for r in schema["required"])
    ):
        raise bad(f"{path}.required", "a list of property names", schema["required"])
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise bad(f"{path}.enum", "a non-empty list", schema["enum"])
    for key in _SUBSCHEMA_MAPS:
        if key in schema:
            members = schema[key]
            if not isinstance(members, Mapping):
                raise bad(f"{path}.{key}", "an object of schemas", members)
            for name, member in members.items():
                check_schema(member, call=call, path=f"{path}.{key}.{name}")
    for key in _SUBSCHEMA_LISTS:
        if key in schema:
            members = schema[key]
            if not isinstance(members, list) or not members:
                raise bad(f"{path}.{key}", "a non-empty list of schemas", members)
            for index, member in enumerate(members):
                check_schema(member, call=call, path=f"{path}.{key}[{index}]")
    for key in _SUBSCHEMAS:
        if key in schema:
            check_schema(schema[key], call=call, path=f"{path}.{key}")


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


_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""OpenAI's rule for a function's name."""


def _tools(value: Any, call: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise RequestValidationError(f"{call}: tools must be a list of OpenAI function tools")
    if not value:
        raise RequestValidationError(f"{call}: tools is empty: offer at least one, or leave tools out")
    for index, tool in enumerate(value):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or tool.get("type") != "function":
            raise RequestValidationError(
                f"{call}: tools[{index}] must be {{'type': 'function', 'function': {{'name': ..., "
                "'parameters': {...}}}"
            )
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise RequestValidationError(
                f"{call}: tools[{index}].function.name must be 1-64 letters, digits, _ or -, got {name!r}"
            )
        if "parameters" in function:
            check_schema(function["parameters"], call=call, path=f"tools[{index}].function.parameters")
    return tuple(value)


def _tool_choice(value: Any, tools: Sequence[Mapping[str, Any]], call: str) -> Any:
    """OpenAI's ``tool_choice``: ``"none"``, ``"auto"``, ``"required"`` or one of the tools by name."""
    if value is None:
        return None
    if not tools:
        raise RequestValidationError(f"{call}: tool_choice needs tools to choose from")
    if value in ("none", "auto", "required"):
        return value
    names = [tool["function"]["name"] for tool in tools]
    function = value.get("function") if isinstance(value, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(value, Mapping) or value.get("type") != "function" or not isinstance(name, str):
        raise RequestValidationError(
            f"{call}: tool_choice must be 'none', 'auto', 'required' or "
            f"{{'type': 'function', 'function': {{'name': ...}}}}, got {value!r}"
        )
    if name not in names:
        raise RequestValidationError(
            f"{call}: tool_choice names {name!r}, which is not among the tools ({', '.join(names)})"
        )
    return dict(value)
