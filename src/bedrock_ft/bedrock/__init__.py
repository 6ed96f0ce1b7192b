"""Bedrock: import merged models with Custom Model Import, manage them, and invoke them.

``BedrockImporter(ImportConfig(...)).import_model(model)`` returns an
:class:`~bedrock_ft.artifacts.ImportedModel`; ``ImportedModelClient(imported)`` invokes it. The same
code runs against AWS and against the local Bedrock (``bedrock_ft.local``): only the endpoints differ.
Light: no torch. docs/importing.md and docs/invoking.md have the details.
"""

from __future__ import annotations

from bedrock_ft.bedrock._cost import CostEstimate, estimate_cost
from bedrock_ft.bedrock._stream import TextStream
from bedrock_ft.bedrock.client import ImportedModelClient
from bedrock_ft.bedrock.config import ImportConfig, VpcConfig
from bedrock_ft.bedrock.iam import create_import_role, import_role_policies
from bedrock_ft.bedrock.importer import BedrockImporter
from bedrock_ft.bedrock.invoke_config import API_FORMATS, GenerationParams, InvokeConfig
from bedrock_ft.bedrock.results import BatchItem, BatchResult, Completion, RetryEvent, Usage

__all__ = [
    "API_FORMATS",
    "BatchItem",
    "BatchResult",
    "BedrockImporter",
    "Completion",
    "CostEstimate",
    "GenerationParams",
    "ImportConfig",
    "ImportedModelClient",
    "InvokeConfig",
    "RetryEvent",
    "TextStream",
    "Usage",
    "VpcConfig",
    "create_import_role",
    "estimate_cost",
    "import_role_policies",
]
