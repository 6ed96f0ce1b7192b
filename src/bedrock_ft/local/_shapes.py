"""Routes and request parsing for the local Bedrock, read from botocore's models.

Validation lives in :mod:`bedrock_ft._shapes` (the importer checks its own requests with it too) and is
re-exported here. Choices where the real service can't be read off the model: an unknown JSON body
member, and a value of the wrong JSON type (the service's `SerializationException`), are validation
errors here too.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

from bedrock_ft._shapes import (
    ShapeValidationError,
    input_errors,
    operation_model,
    pattern_matcher,
    service_model,
    translate_java_pattern,
    validate_input,
    validate_value,
)

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


class RequestSerializationError(ShapeValidationError):
    """The body is not a JSON object: the service's `SerializationException`, a plain message."""

    code = "SerializationException"

    def _render(self) -> str:
        return "; ".join(self.messages)


# --- routes ---------------------------------------------------------------------------------------


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
