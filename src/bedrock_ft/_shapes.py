"""Requests checked against botocore's service models: patterns, lengths, enums and required members.

botocore checks types and required members client-side, but not `pattern`, `max` or `enum`; the real
service does, and answers HTTP 400 `ValidationException`, worded like this (several joined by "; "):

    1 validation error detected: Value 'bad name!' at 'jobName' failed to satisfy constraint: Member must
    satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9\\+\\-\\.])*

The local Bedrock answers bad requests with these checks, and ``BedrockImporter`` runs them on its own
requests before it uploads anything, so a bad name fails in a second instead of after a 14 GB upload.

Choices where the real service can't be read off the model: an unknown member is an error; string
lengths count code points; list items are named `list.1.member`, map values `map.<key>`.

Patterns are Java regexes over the whole value. They are translated (`\\p{L}`, Java's `.`, ASCII-only
`\\d\\s\\w`) and run on a linear-time NFA: in `re`, `(-*[a-zA-Z0-9\\+\\-\\.])*` (JobName) takes
exponential time on `a---...---!`, and a 60-dash job name would hang a server.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bedrock_ft._patterns import pattern_matcher, translate_java_pattern

__all__ = [
    "ShapeValidationError",
    "input_errors",
    "operation_model",
    "pattern_matcher",
    "service_model",
    "translate_java_pattern",
    "validate_input",
    "validate_value",
]


class ShapeValidationError(ValueError):
    """The request breaks its operation's input shape: answer HTTP 400 with `code` and `str(exc)`."""

    code = "ValidationException"

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__(self._render())

    def _render(self) -> str:
        n = len(self.messages)
        return f"{n} validation error{'' if n == 1 else 's'} detected: {'; '.join(self.messages)}"


@functools.cache
def service_model(service: str) -> Any:
    """botocore's `ServiceModel` for "bedrock" or "bedrock-runtime", loaded once.

    Loaded without a botocore session: a session reads AWS_PROFILE and the config files, which have
    nothing to do with the service's shapes and may name a profile that doesn't exist here.
    """
    from botocore.loaders import create_loader
    from botocore.model import ServiceModel

    return ServiceModel(create_loader().load_service_model(service, "service-2"), service_name=service)


def operation_model(service: str, operation: str) -> Any:
    return service_model(service).operation_model(operation)


# --- validation --------------------------------------------------------------------------------------


def input_errors(service: str, operation: str, params: Mapping[str, Any]) -> list[str]:
    """Every constraint `params` breaks, worded as the service does; `[]` when the input is valid."""
    shape = operation_model(service, operation).input_shape
    if shape is None:
        return [_unknown(key, f"{operation}Request") for key in params]
    return validate_value(shape, dict(params))


def validate_input(service: str, operation: str, params: Mapping[str, Any]) -> None:
    """Raise `ShapeValidationError` carrying every problem of `params` at once."""
    errors = input_errors(service, operation, params)
    if errors:
        raise ShapeValidationError(errors)


def validate_value(shape: Any, value: Any, path: str = "") -> list[str]:
    """Check a value against any botocore shape, e.g. an event before it is streamed."""
    errors: list[str] = []
    _check(shape, value, path, errors, hidden=False)
    return errors


_TYPES: dict[str, Any] = {
    "string": str, "boolean": bool, "blob": (bytes, bytearray), "timestamp": datetime, "list": list,
    "map": dict, "structure": dict, "float": (int, float), "double": (int, float), "integer": int,
    "long": int,
}  # fmt: skip
_INT_BOUND = {"integer": 2**31, "long": 2**63}


def _type_ok(kind: str, value: Any) -> bool:
    if kind not in _TYPES:
        return True
    if not isinstance(value, _TYPES[kind]) or (isinstance(value, bool) and kind != "boolean"):
        return False
    return kind not in _INT_BOUND or -_INT_BOUND[kind] <= value < _INT_BOUND[kind]


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_render(v)}" for k, v in value.items()) + "}"
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text if len(text) <= 256 else text[:256] + "..."  # don't echo a megabyte back


def _null(path: str) -> str:
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


def _unknown(path: str, shape_name: str) -> str:
    return f"Value at '{path}' failed to satisfy constraint: Member is not defined in {shape_name}"


def _constraints(shape: Any, value: Any) -> Iterable[str]:
    """The scalar and size constraints `value` (already of the right type) breaks."""
    kind, meta = shape.type_name, shape.metadata
    if kind in ("boolean", "timestamp"):
        return
    numeric = kind in ("integer", "long", "float", "double")
    size, what = (value, "value") if numeric else (len(value), "length")
    if "min" in meta and size < meta["min"]:
        yield f"Member must have {what} greater than or equal to {meta['min']}"
    if "max" in meta and size > meta["max"]:
        yield f"Member must have {what} less than or equal to {meta['max']}"
        if not numeric:
            return  # matching a pattern against an over-long value only costs time
    matches = pattern_matcher(meta["pattern"]) if kind == "string" and "pattern" in meta else None
    if matches is not None and not matches(value):
        yield f"Member must satisfy regular expression pattern: {meta['pattern']}"
    if kind == "string" and "enum" in meta and value not in meta["enum"]:
        yield f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]"
    if (
        kind == "structure"
        and meta.get("union")
        and sum(v is not None for k, v in value.items() if k in shape.members) != 1
    ):
        yield "Member must have exactly one member set"


def _check(shape: Any, value: Any, path: str, errors: list[str], hidden: bool) -> None:
    kind, hidden = shape.type_name, hidden or bool(shape.metadata.get("sensitive"))
    if shape.metadata.get("document"):
        return
    broken = list(_constraints(shape, value)) if _type_ok(kind, value) else [f"Member must be of type {kind}"]
    shown = " " if hidden or isinstance(value, (bytes, bytearray)) else f" '{_render(value)}' "
    errors.extend(f"Value{shown}at '{path}' failed to satisfy constraint: {text}" for text in broken)
    if not _type_ok(kind, value):
        return
    join = (lambda key: f"{path}.{key}") if path else str
    if kind == "structure":
        errors.extend(_null(join(name)) for name in shape.required_members if value.get(name) is None)
        for key, item in value.items():
            if key not in shape.members:
                errors.append(_unknown(join(key), shape.name))
            elif item is not None:
                _check(shape.members[key], item, join(key), errors, hidden)
    elif kind in ("list", "map"):
        for key, item in enumerate(value, 1) if kind == "list" else value.items():
            if kind == "map":
                _check(shape.key, key, path, errors, hidden)
            item_path = f"{path}.{key}.member" if kind == "list" else join(key)
            if item is None:
                errors.append(_null(item_path))
            else:
                _check(shape.member if kind == "list" else shape.value, item, item_path, errors, hidden)
