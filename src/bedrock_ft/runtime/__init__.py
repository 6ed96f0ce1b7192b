"""Invoking imported models: the Bedrock runtime, as boto3's ``bedrock-runtime`` client serves it.

``ImportedModelClient(imported)`` calls a model imported with Custom Model Import: ``complete``,
``chat``, ``stream``, ``converse`` and their async twins, one codec per invoke body format, the training
chat template, cold-start and throttling retries, bounded batches and usage accounting. Light: no
torch. docs/invoking.md has the details.
"""

from __future__ import annotations

from bedrock_ft.runtime._batch import run_batch
from bedrock_ft.runtime._client import ImportedModelClient
from bedrock_ft.runtime._config import API_FORMATS, GenerationParams, InvokeConfig
from bedrock_ft.runtime._results import (
    BatchItem,
    BatchResult,
    Completion,
    RetryEvent,
    TokenLogprob,
    ToolCall,
    Usage,
)
from bedrock_ft.runtime._stream import TextStream

__all__ = [
    "API_FORMATS",
    "BatchItem",
    "BatchResult",
    "Completion",
    "GenerationParams",
    "ImportedModelClient",
    "InvokeConfig",
    "RetryEvent",
    "TextStream",
    "TokenLogprob",
    "ToolCall",
    "Usage",
    "run_batch",
]
