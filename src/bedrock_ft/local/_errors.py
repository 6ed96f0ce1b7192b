"""Errors the local Bedrock answers with, in the service's own shape.

The HTTP status of each error code comes from botocore's service model, so a client sees exactly
what the real service would send: the ``x-amzn-ErrorType`` header and a ``{"message": ...}`` body.
"""

from __future__ import annotations

import functools

__all__ = ["ServiceError", "status_for"]


class ServiceError(Exception):
    """An error response: ``code`` is the service's exception name, e.g. ``ValidationException``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return status_for(self.code)


# Codes the service sends that its botocore model doesn't declare as error shapes.
_UNDECLARED = {"SerializationException": 400, "UnknownOperationException": 404}


@functools.cache
def status_for(code: str) -> int:
    from bedrock_ft.local._shapes import service_model

    for service in ("bedrock-runtime", "bedrock"):
        model = service_model(service)
        if code in model.shape_names:
            status = model.shape_for(code).metadata.get("error", {}).get("httpStatusCode")
            if isinstance(status, int):
                return status
    return _UNDECLARED.get(code, 500)
