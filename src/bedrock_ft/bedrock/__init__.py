"""Bedrock: import merged models with Custom Model Import, and manage them.

``BedrockImporter(ImportConfig(...)).import_model(model)`` returns an
:class:`~bedrock_ft.artifacts.ImportedModel`. The same code runs against AWS and against the local
Bedrock (``bedrock_ft.local``): only the endpoints differ. Light: no torch. docs/importing.md has the
details and the preflight rules table.
"""

from __future__ import annotations

from bedrock_ft.bedrock._cost import CostEstimate, estimate_cost
from bedrock_ft.bedrock.config import ImportConfig, VpcConfig
from bedrock_ft.bedrock.iam import create_import_role, import_role_policies
from bedrock_ft.bedrock.importer import BedrockImporter

__all__ = [
    "BedrockImporter",
    "CostEstimate",
    "ImportConfig",
    "VpcConfig",
    "create_import_role",
    "estimate_cost",
    "import_role_policies",
]
