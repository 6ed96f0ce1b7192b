"""Deprecated: ``bedrock_ft.bedrock`` was split in two packages that mirror boto3's two clients.

- :mod:`bedrock_ft.importing` (the ``bedrock`` control plane): ``BedrockImporter``, ``ImportConfig``,
  ``ImportedModels``, ``create_import_role``, ``estimate_cost``;
- :mod:`bedrock_ft.runtime` (``bedrock-runtime``): ``ImportedModelClient``, ``InvokeConfig``,
  ``Completion`` and the other results.

The old names still resolve here, with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED: dict[str, str] = {
    **dict.fromkeys(
        ("BedrockImporter", "CostEstimate", "ImportConfig", "VpcConfig", "create_import_role",
         "estimate_cost", "import_role_policies"),
        "bedrock_ft.importing",
    ),
    **dict.fromkeys(
        ("API_FORMATS", "BatchItem", "BatchResult", "Completion", "GenerationParams", "ImportedModelClient",
         "InvokeConfig", "RetryEvent", "TextStream", "Usage"),
        "bedrock_ft.runtime",
    ),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    target = _MOVED.get(name)
    if target is None:
        raise AttributeError(f"module 'bedrock_ft.bedrock' has no attribute {name!r}")
    warnings.warn(
        f"bedrock_ft.bedrock.{name} moved to {target}.{name}; bedrock_ft.bedrock will be removed",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(target), name)


def __dir__() -> list[str]:
    return sorted(_MOVED)
