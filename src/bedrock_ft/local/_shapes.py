"""Routes, request parsing and input validation for the local Bedrock, all read from botocore's models.

botocore checks types and required members client-side, but not `pattern`, `max` or `enum`; the real
service does, and answers HTTP 400 `ValidationException`, worded like this (several joined by "; "):

    1 validation error detected: Value 'bad name!' at 'jobName' failed to satisfy constraint: Member must
    satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9\\+\\-\\.])*

Choices where the real service can't be read off the model: an unknown JSON body member, and a value of
the wrong JSON type (the service's `SerializationException`), are validation errors here too; string
lengths count code points; list items are named `list.1.member`, map values `map.<key>`.

Patterns are Java regexes over the whole value. They are translated (`\\p{L}`, Java's `.`, ASCII-only
`\\d\\s\\w`) and run on a linear-time NFA: in `re`, `(-*[a-zA-Z0-9\\+\\-\\.])*` (JobName) takes
exponential time on `a---...---!`, and a 60-dash job name would hang the server.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

from bedrock_ft.local._patterns import pattern_matcher, translate_java_pattern

__all__ = [
    "RequestSerializationError",
    "ShapeValidationError",
    "input_errors",
    "operation_http",
    "parse_request",
    "pattern_matcher",
    "routes",
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


class RequestSerializationError(ShapeValidationError):
    """The body is not a JSON object: the service's `SerializationException`, a plain message."""

    code = "SerializationException"

    def _render(self) -> str:
        return "; ".join(self.messages)


# --- models and routes -------------------------------------------------------------------------------


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


class OperationHttp(NamedTuple):
    method: str
    uri_template: str  # as in the model, query part dropped: "/model/{modelId}/invoke"
    status_code: int  # on success
    errors: dict[str, int]  # the operation's error shape names -> their HTTP status


def operation_http(service: str, operation: str) -> OperationHttp:
    op = operation_model(service, operation)
    errors = {e.name: int(e.metadata.get("error", {}).get("httpStatusCode", 400)) for e in op.error_shapes}
    uri = op.http["requestUri"].split("?", 1)[0]
    return OperationHttp(op.http["method"], uri, int(op.http.get("responseCode", 200)), errors)


class Route(NamedTuple):
    operation: str
    method: str
    path: str  # Starlette syntax, every label `{name:path}`


_LABEL = re.compile(r"\{([^}]+?)(\+?)\}")


def routes(service: str, operations: Iterable[str] | None = None) -> list[Route]:
    """The operations' routes for Starlette, those with the most literal text first.

    botocore percent-encodes a label whole (`arn%3Aaws%3Abedrock...imported-model%2Fabc`), and ASGI
    servers decode the path before routing, so an ARN arrives with a real `/` in it: every label uses
    Starlette's `path` convertor, which then hands over the exact ARN.
    """
    names = service_model(service).operation_names if operations is None else operations
    found = [(name, operation_http(service, name)) for name in names]
    found.sort(key=lambda item: (-len(_LABEL.sub("", item[1].uri_template)), item[1].uri_template))
    return [Route(name, http.method, _LABEL.sub(r"{\1:path}", http.uri_template)) for name, http in found]


# --- request parsing ---------------------------------------------------------------------------------


def parse_request(  # noqa: PLR0917 - the server passes the request's parts positionally
    service: str,
    operation: str,
    path_params: Mapping[str, str],
    query: Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]],
    body: bytes | None,
    headers: Mapping[str, str],
) -> dict[str, Any]:
    """The operation's input as botocore would have taken it: keyed by member name, values typed.

    URI labels, query parameters (a mapping, or pairs such as Starlette's `multi_items()`) and headers
    are found by their wire names. A blob payload (InvokeModel `body`) is the raw bytes; otherwise the
    body is JSON, its blobs base64-decoded and its timestamps made `datetime`. Values that don't convert,
    and unknown body members, are kept as they came for `validate_input` to report. Query-string and
    header maps, and list-valued headers, are not collected: no Bedrock operation has one.
    """
    shape = operation_model(service, operation).input_shape
    if shape is None:
        return {}
    lowered = {k.lower(): v for k, v in headers.items()}
    queried: dict[str, list[str]] = {}
    for key, value in query.items() if isinstance(query, Mapping) else query:
        queried.setdefault(key, []).extend([value] if isinstance(value, str) else value)
    payload, params, in_body = shape.serialization.get("payload"), {}, {}
    for name, member in shape.members.items():
        location, wire = member.serialization.get("location"), member.serialization.get("name", name)
        if location in ("uri", "header"):
            raw = path_params.get(wire) if location == "uri" else lowered.get(wire.lower())
            if raw is not None:
                params[name] = _from_text(member, raw, location)
        elif location == "querystring":
            if wire in queried:
                item = member.member if member.type_name == "list" else member
                values = [_from_text(item, v, location, member) for v in queried[wire]]
                params[name] = values if member.type_name == "list" else values[0]
        elif name == payload:
            if member.type_name in ("blob", "string") and body is not None:
                params[name] = body if member.type_name == "blob" else body.decode("utf-8", "replace")
            elif member.type_name == "structure" and body and body.strip():
                params[name] = _from_json(member, _json_object(body))
        else:
            in_body[wire] = name
    if payload is None and in_body and body and body.strip():
        stray = []
        for key, value in _json_object(body).items():
            if key in in_body:
                if value is not None:
                    params[in_body[key]] = _from_json(shape.members[in_body[key]], value)
            elif key in shape.members:  # a label, query or header member sent in the body instead
                stray.append(f"Value at '{key}' failed to satisfy constraint: Member must not be in the body")
            else:
                params[key] = value
        if stray:
            raise ShapeValidationError(stray)
    return params


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise RequestSerializationError([f"Request body is not valid JSON: {exc}"]) from None
    if not isinstance(doc, dict):
        raise RequestSerializationError(["Request body must be a JSON object"])
    return doc


def _from_text(shape: Any, text: str, location: str, member: Any = None) -> Any:
    kind, member = shape.type_name, member or shape
    try:
        if kind in ("integer", "long") and re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
        if kind == "boolean" and text in ("true", "false"):
            return text == "true"
        if kind == "timestamp":
            default = "rfc822" if location == "header" else "iso8601"
            return _timestamp(text, member.serialization.get("timestampFormat", default))
        if kind == "blob":
            return base64.b64decode(text, validate=True)
    except (ValueError, TypeError, OverflowError):  # binascii.Error is a ValueError
        pass
    return text


def _from_json(shape: Any, value: Any) -> Any:
    kind = shape.type_name
    if shape.metadata.get("document"):
        return value
    if kind == "structure" and isinstance(value, dict):
        members = {m.serialization.get("name", n): (n, m) for n, m in shape.members.items()}
        known = {members[k][0]: _from_json(members[k][1], v) for k, v in value.items() if k in members}
        return {k: v for k, v in value.items() if k not in members} | {
            k: v for k, v in known.items() if v is not None
        }
    if kind == "list" and isinstance(value, list):
        return [None if v is None else _from_json(shape.member, v) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _from_json(shape.value, v) for k, v in value.items()}
    try:
        if kind == "blob" and isinstance(value, str):
            return base64.b64decode(value, validate=True)
        if kind == "timestamp" and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return _timestamp(value, shape.serialization.get("timestampFormat", "unixTimestamp"))
    except (ValueError, TypeError, OverflowError, OSError):
        pass
    return value


def _timestamp(value: str | float, fmt: str) -> datetime:
    if not isinstance(value, str) or fmt == "unixTimestamp":
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    if fmt == "rfc822":
        return parsedate_to_datetime(value)
    parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


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
