"""Custom Model Import: the Bedrock control plane, as boto3's ``bedrock`` client serves it.

``BedrockImporter(ImportConfig(...)).import_model(model)`` runs preflight, uploads the merged model to
S3 (a model already in S3, ``"s3://bucket/prefix/"``, is imported from where it is) and runs the import
job; it returns an :class:`~bedrock_ft.artifacts.ImportedModel`.
:class:`ImportedModels` describes, lists and deletes imported models and estimates what serving them
costs. The same code runs against AWS and the local Bedrock (``bedrock_ft.local``): only the endpoints
differ. Light: no torch. docs/importing.md has the details.
"""

from __future__ import annotations

from bedrock_ft.importing._config import IMPORT_LAYOUT, ImportConfig, VpcConfig
from bedrock_ft.importing._cost import CostEstimate, estimate_cost
from bedrock_ft.importing._iam import create_import_role, import_role_policies
from bedrock_ft.importing._importer import BedrockImporter
from bedrock_ft.importing._lifecycle import ImportedModels

__all__ = [
    "IMPORT_LAYOUT",
    "BedrockImporter",
    "CostEstimate",
    "ImportConfig",
    "ImportedModels",
    "VpcConfig",
    "create_import_role",
    "estimate_cost",
    "import_role_policies",
]
