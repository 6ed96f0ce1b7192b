"""The local Bedrock: Custom Model Import and the runtime API on loopback, plus moto's S3.

``LocalStack`` starts both servers and points boto3 at them through the standard
``AWS_ENDPOINT_URL_*`` variables, so the same client code runs here and against AWS.
Importing this package is cheap; the servers' dependencies load when a stack starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["LocalBedrockConfig", "LocalStack"]

if TYPE_CHECKING:
    from bedrock_ft.local._config import LocalBedrockConfig
    from bedrock_ft.local._stack import LocalStack


def __getattr__(name: str) -> Any:
    if name == "LocalStack":
        from bedrock_ft.local._stack import LocalStack

        return LocalStack
    if name == "LocalBedrockConfig":
        from bedrock_ft.local._config import LocalBedrockConfig

        return LocalBedrockConfig
    raise AttributeError(f"module 'bedrock_ft.local' has no attribute {name!r}")
