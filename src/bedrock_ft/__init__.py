"""bedrock-ft: from an open model to a fine-tuned model serving in Amazon Bedrock.

Importing the package is cheap: names are loaded on first use, and nothing here imports torch,
transformers, fmeval or ray. See docs/architecture.md for the stages and how artifacts flow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bedrock_ft._system import prepare_openmp
from bedrock_ft._version import __version__

# Before anything imports torch: CPU threads that wait yield their core (see _system.prepare_openmp).
prepare_openmp()

if TYPE_CHECKING:
    from bedrock_ft.architectures import (
        ApiFormat,
        Architecture,
        NativeFormat,
        architecture_for_config,
        get_architecture,
        list_architectures,
        register_architecture,
    )
    from bedrock_ft.artifacts import (
        AdapterArtifact,
        Artifact,
        DatasetArtifact,
        EvaluationReport,
        ImportedModel,
        ModelArtifact,
        load_artifact,
    )
    from bedrock_ft.aws import AwsConfig
    from bedrock_ft.chat_templates import register_chat_template
    from bedrock_ft.config import BaseConfig
    from bedrock_ft.data import DatasetBuilder, DatasetConfig, register_format
    from bedrock_ft.errors import (
        AccessDeniedError,
        ArtifactError,
        AwsError,
        BedrockFTError,
        ConfigError,
        ConflictError,
        ConnectionDroppedError,
        DatasetError,
        EndpointUnreachableError,
        EvaluationError,
        ImportJobError,
        InvocationError,
        MalformedResponseError,
        MergeError,
        ModelError,
        ModelNotReadyError,
        ModelTimeoutError,
        PipelineError,
        PreflightError,
        QuotaExceededError,
        RegistryError,
        RequestValidationError,
        ResourceNotFoundError,
        ServiceUnavailableError,
        ThrottledError,
        TrainingError,
        UnsupportedFormatError,
    )
    from bedrock_ft.evaluation import ComparisonReport, EvalConfig, Evaluator
    from bedrock_ft.importing import BedrockImporter, ImportConfig, ImportedModels
    from bedrock_ft.merging import AdapterMerger, MergeConfig
    from bedrock_ft.pipeline import Pipeline, PipelineConfig
    from bedrock_ft.runtime import BatchResult, Completion, ImportedModelClient, InvokeConfig
    from bedrock_ft.training import QLoRAConfig, QLoRATrainer, TrainingConfig

__all__ = [
    "AccessDeniedError",
    "AdapterArtifact",
    "AdapterMerger",
    "ApiFormat",
    "Architecture",
    "Artifact",
    "ArtifactError",
    "AwsConfig",
    "AwsError",
    "BaseConfig",
    "BatchResult",
    "BedrockFTError",
    "BedrockImporter",
    "ComparisonReport",
    "Completion",
    "ConfigError",
    "ConflictError",
    "ConnectionDroppedError",
    "DatasetArtifact",
    "DatasetBuilder",
    "DatasetConfig",
    "DatasetError",
    "EndpointUnreachableError",
    "EvalConfig",
    "EvaluationError",
    "EvaluationReport",
    "Evaluator",
    "ImportConfig",
    "ImportJobError",
    "ImportedModel",
    "ImportedModelClient",
    "ImportedModels",
    "InvocationError",
    "InvokeConfig",
    "MalformedResponseError",
    "MergeConfig",
    "MergeError",
    "ModelArtifact",
    "ModelError",
    "ModelNotReadyError",
    "ModelTimeoutError",
    "NativeFormat",
    "Pipeline",
    "PipelineConfig",
    "PipelineError",
    "PreflightError",
    "QLoRAConfig",
    "QLoRATrainer",
    "QuotaExceededError",
    "RegistryError",
    "RequestValidationError",
    "ResourceNotFoundError",
    "ServiceUnavailableError",
    "ThrottledError",
    "TrainingConfig",
    "TrainingError",
    "UnsupportedFormatError",
    "__version__",
    "architecture_for_config",
    "get_architecture",
    "list_architectures",
    "load_artifact",
    "register_architecture",
    "register_chat_template",
    "register_format",
]

# Public name -> module that defines it. Loaded lazily on first attribute access.
_EXPORTS: dict[str, str] = {
    # architectures
    "ApiFormat": "bedrock_ft.architectures",
    "Architecture": "bedrock_ft.architectures",
    "NativeFormat": "bedrock_ft.architectures",
    "architecture_for_config": "bedrock_ft.architectures",
    "get_architecture": "bedrock_ft.architectures",
    "list_architectures": "bedrock_ft.architectures",
    "register_architecture": "bedrock_ft.architectures",
    # artifacts
    "AdapterArtifact": "bedrock_ft.artifacts",
    "Artifact": "bedrock_ft.artifacts",
    "DatasetArtifact": "bedrock_ft.artifacts",
    "EvaluationReport": "bedrock_ft.artifacts",
    "ImportedModel": "bedrock_ft.artifacts",
    "ModelArtifact": "bedrock_ft.artifacts",
    "load_artifact": "bedrock_ft.artifacts",
    # configs
    "AwsConfig": "bedrock_ft.aws",
    # datasets
    "DatasetBuilder": "bedrock_ft.data",
    "DatasetConfig": "bedrock_ft.data",
    "register_chat_template": "bedrock_ft.chat_templates",
    "register_format": "bedrock_ft.data",
    "BaseConfig": "bedrock_ft.config",
    # training
    "QLoRAConfig": "bedrock_ft.training",
    "QLoRATrainer": "bedrock_ft.training",
    "TrainingConfig": "bedrock_ft.training",
    # merging
    "AdapterMerger": "bedrock_ft.merging",
    "MergeConfig": "bedrock_ft.merging",
    # importing
    "BedrockImporter": "bedrock_ft.importing",
    "ImportConfig": "bedrock_ft.importing",
    "ImportedModels": "bedrock_ft.importing",
    # invoking
    "ImportedModelClient": "bedrock_ft.runtime",
    "InvokeConfig": "bedrock_ft.runtime",
    "Completion": "bedrock_ft.runtime",
    "BatchResult": "bedrock_ft.runtime",
    # evaluating
    "Evaluator": "bedrock_ft.evaluation",
    "EvalConfig": "bedrock_ft.evaluation",
    "ComparisonReport": "bedrock_ft.evaluation",
    # the whole pipeline
    "Pipeline": "bedrock_ft.pipeline",
    "PipelineConfig": "bedrock_ft.pipeline",
    # errors
    "AccessDeniedError": "bedrock_ft.errors",
    "ArtifactError": "bedrock_ft.errors",
    "AwsError": "bedrock_ft.errors",
    "BedrockFTError": "bedrock_ft.errors",
    "ConfigError": "bedrock_ft.errors",
    "ConflictError": "bedrock_ft.errors",
    "ConnectionDroppedError": "bedrock_ft.errors",
    "DatasetError": "bedrock_ft.errors",
    "EndpointUnreachableError": "bedrock_ft.errors",
    "EvaluationError": "bedrock_ft.errors",
    "ImportJobError": "bedrock_ft.errors",
    "InvocationError": "bedrock_ft.errors",
    "MalformedResponseError": "bedrock_ft.errors",
    "ModelError": "bedrock_ft.errors",
    "ModelTimeoutError": "bedrock_ft.errors",
    "UnsupportedFormatError": "bedrock_ft.errors",
    "MergeError": "bedrock_ft.errors",
    "PipelineError": "bedrock_ft.errors",
    "ModelNotReadyError": "bedrock_ft.errors",
    "PreflightError": "bedrock_ft.errors",
    "QuotaExceededError": "bedrock_ft.errors",
    "RegistryError": "bedrock_ft.errors",
    "RequestValidationError": "bedrock_ft.errors",
    "ResourceNotFoundError": "bedrock_ft.errors",
    "ServiceUnavailableError": "bedrock_ft.errors",
    "ThrottledError": "bedrock_ft.errors",
    "TrainingError": "bedrock_ft.errors",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bedrock_ft' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
