"""Typed stage outputs.

Each stage takes an artifact and returns one. An artifact is written as ``manifest.json`` next to the
files it describes, so a stage can run in another process or on another machine (train on a GPU box,
import from a laptop), and a pipeline can skip a stage whose manifest matches its config hash. Every
stage takes its input the same way: the artifact, its manifest, or the directory holding the manifest
(:meth:`Artifact.from_input`).
"""

from __future__ import annotations

from bedrock_ft.artifacts._manifest import MANIFEST_NAME, Artifact
from bedrock_ft.artifacts._records import (
    DroppedRecord,
    FileEntry,
    LogitsCheck,
    LoraSettings,
    MergeChecks,
    MergeInfo,
    QuantizationSettings,
    TokenStats,
    TrainMetrics,
    UploadSummary,
    WeightsCheck,
)
from bedrock_ft.artifacts._stages import (
    AdapterArtifact,
    AnyArtifact,
    DatasetArtifact,
    EvaluationReport,
    ImportedModel,
    ModelArtifact,
    load_artifact,
)

__all__ = [
    "MANIFEST_NAME",
    "AdapterArtifact",
    "AnyArtifact",
    "Artifact",
    "DatasetArtifact",
    "DroppedRecord",
    "EvaluationReport",
    "FileEntry",
    "ImportedModel",
    "LogitsCheck",
    "LoraSettings",
    "MergeChecks",
    "MergeInfo",
    "ModelArtifact",
    "QuantizationSettings",
    "TokenStats",
    "TrainMetrics",
    "UploadSummary",
    "WeightsCheck",
    "load_artifact",
]
