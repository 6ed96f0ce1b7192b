"""The five stage outputs: dataset, adapter, merged model, imported model, evaluation report."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, TypeAdapter

from bedrock_ft._findings import PreflightReport
from bedrock_ft.artifacts._manifest import Artifact
from bedrock_ft.artifacts._records import (
    DroppedRecord,
    FileEntry,
    LoraSettings,
    MergeInfo,
    QuantizationSettings,
    TokenStats,
    TrainMetrics,
    UploadSummary,
)
from bedrock_ft.formats import LEGACY_CUTOFF, NEW_FORMATS

if TYPE_CHECKING:
    from bedrock_ft.architectures import Architecture

__all__ = [
    "ANY_ARTIFACT",
    "AdapterArtifact",
    "AnyArtifact",
    "DatasetArtifact",
    "EvaluationReport",
    "ImportedModel",
    "ModelArtifact",
    "load_artifact",
]


class DatasetArtifact(Artifact):
    """What DatasetBuilder produced: JSONL splits plus how they were made."""

    kind: Literal["dataset"] = Field(default="dataset", description="Artifact kind.")
    train_uri: str = Field(description="Training split, JSON Lines of chat `messages` (local path or s3://).")
    test_uri: str | None = Field(default=None, description="Test split, same format.")
    eval_uri: str | None = Field(
        default=None, description="Test split as fmeval-ready JSONL (question, answer, category)."
    )
    format: str = Field(description="Record format the source was read as (openorca, alpaca, ...).")
    chat_template_name: str | None = Field(
        default=None,
        description="Name of the chat template: a built-in or registered name, 'tokenizer' for the "
        "tokenizer's own, 'custom' for a Jinja string.",
    )
    chat_template: str | None = Field(
        default=None, description="The Jinja chat template training, invoke and evaluation all use."
    )
    record_counts: dict[str, int] = Field(default_factory=dict, description="Records per split.")
    dropped: dict[str, int] = Field(default_factory=dict, description="Records dropped, per reason.")
    token_stats: TokenStats | None = Field(default=None, description="Token lengths of the training split.")
    dropped_examples: dict[str, tuple[DroppedRecord, ...]] = Field(
        default_factory=dict, description="The first few dropped records per reason."
    )
    source: str | None = Field(default=None, description="Where the raw records came from.")
    source_records: int | None = Field(default=None, description="Records read from the source.")
    text_column: bool = Field(
        default=False, description="Whether split records also carry `text`, rendered with the template."
    )

    path_fields: ClassVar[tuple[str, ...]] = ("train_uri", "test_uri", "eval_uri")


class AdapterArtifact(Artifact):
    """What QLoRATrainer produced: a LoRA adapter and how it was trained."""

    kind: Literal["adapter"] = Field(default="adapter", description="Artifact kind.")
    adapter_dir: str = Field(description="Directory with adapter_config.json and adapter weights.")
    base_model: str = Field(description="Base model the adapter belongs to: a local path or hub id.")
    architecture: str = Field(description="Registered architecture name (bedrock_ft.get_architecture).")
    lora: LoraSettings | None = Field(default=None, description="LoRA settings used (r, alpha, targets...).")
    quantization: QuantizationSettings | None = Field(
        default=None, description="4-bit settings used during training; None for plain LoRA."
    )
    train_metrics: TrainMetrics = Field(default_factory=TrainMetrics, description="Training metrics.")
    checkpoint_dir: str | None = Field(default=None, description="Where resumable checkpoints are.")
    chat_template: str | None = Field(default=None, description="Chat template the adapter was trained with.")
    training_job: str | None = Field(
        default=None, description="ARN of the SageMaker training job that trained it (backend='sagemaker')."
    )
    merged_model: str | None = Field(
        default=None,
        description="Manifest of the merged model the training job also wrote (merge_in_job); its model_dir "
        "is the job's S3 output, which BedrockImporter imports directly.",
    )

    path_fields: ClassVar[tuple[str, ...]] = ("adapter_dir", "checkpoint_dir", "merged_model")

    def merged_model_artifact(self) -> ModelArtifact | None:
        """The merged model the training job wrote (``merge_in_job``), or None."""
        return None if self.merged_model is None else ModelArtifact.read(self.merged_model)


class ModelArtifact(Artifact):
    """What AdapterMerger produced: a full-precision model directory ready for Custom Model Import."""

    kind: Literal["model"] = Field(default="model", description="Artifact kind.")
    model_dir: str = Field(description="Directory with safetensors shards, config and tokenizer files.")
    architecture: str = Field(description="Registered architecture name.")
    dtype: str = Field(description="Weight dtype: bfloat16, float16 or float32.")
    parameter_count: int = Field(description="Number of parameters.")
    total_bytes: int = Field(description="Total size of all files.")
    files: tuple[FileEntry, ...] = Field(default=(), description="Every file with its size and sha256.")
    preflight: PreflightReport | None = Field(
        default=None, description="Preflight result on the written dir."
    )
    chat_template: str | None = Field(default=None, description="Chat template the model was trained with.")
    base_model: str | None = Field(
        default=None, description="The full-precision base the adapter was merged into."
    )
    adapter_dir: str | None = Field(default=None, description="The adapter that was merged.")
    merge: MergeInfo = Field(
        default_factory=MergeInfo,
        description="How it was merged: mode, seconds, shard size, and the equivalence checks' results.",
    )

    path_fields: ClassVar[tuple[str, ...]] = ("model_dir",)


class ImportedModel(Artifact):
    """A model imported into Bedrock (or the local Bedrock) with Custom Model Import."""

    kind: Literal["imported_model"] = Field(default="imported_model", description="Artifact kind.")
    model_arn: str | None = Field(
        default=None,
        description="Imported model ARN, the modelId for InvokeModel (None while the job is in progress).",
    )
    model_name: str = Field(description="importedModelName.")
    job_arn: str | None = Field(default=None, description="The import job that created it.")
    job_name: str | None = Field(default=None, description="That job's name.")
    status: str = Field(default="Completed", description="Import job status: InProgress, Completed, Failed.")
    s3_uri: str | None = Field(default=None, description="Where Bedrock read the model files from.")
    region: str | None = Field(default=None, description="AWS region.")
    endpoint_url: str | None = Field(default=None, description="Bedrock endpoint, when not the AWS default.")
    api_formats: tuple[str, ...] = Field(default=(), description="Invoke formats the model accepts.")
    cmus_per_copy: int | None = Field(default=None, description="Custom Model Units per model copy.")
    architecture: str | None = Field(default=None, description="Registered architecture name.")
    instruct_supported: bool | None = Field(
        default=None, description="Whether Bedrock found a chat template (chat and Converse work)."
    )
    chat_template: str | None = Field(default=None, description="Chat template the model was trained with.")
    special_tokens: dict[str, str] = Field(
        default_factory=dict,
        description="The tokenizer's special tokens (bos_token, eos_token...), which the chat template uses.",
    )
    adds_bos_token: bool | None = Field(
        default=None,
        description="Whether the tokenizer puts a BOS token in front of a prompt itself (None: unknown).",
    )
    creation_time: datetime | None = Field(default=None, description="When Bedrock created the model.")
    upload: UploadSummary | None = Field(
        default=None, description="What the upload did: files sent and skipped, bytes, seconds."
    )

    @property
    def legacy(self) -> bool:
        """Imported before the newer body formats existed (2025-11-11): it takes its family's native body
        only. Told by the formats recorded at import, else by the creation time."""
        if self.api_formats:
            return not any(f in NEW_FORMATS for f in self.api_formats)
        created = self.creation_time
        if created is None:
            return False
        if created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
        return created < LEGACY_CUTOFF

    def registered_architecture(self) -> Architecture | None:
        """Its entry in the architecture registry, or None (not recorded, or not registered here)."""
        from bedrock_ft.architectures import get_architecture
        from bedrock_ft.errors import RegistryError

        if not self.architecture:
            return None
        try:
            return get_architecture(self.architecture)
        except RegistryError:
            return None

    def accepted_formats(self) -> tuple[str, ...]:
        """The invoke formats it takes (``Converse`` included where the Converse API works): what its
        import recorded, else what follows from its architecture, its chat template and its age.
        Bedrock itself reports none."""
        if self.api_formats:
            return tuple(self.api_formats)
        arch = self.registered_architecture()
        if arch is not None:
            return arch.formats(legacy=self.legacy, instruct_supported=self.instruct_supported)
        if self.legacy:
            return ()
        formats = NEW_FORMATS
        if self.instruct_supported is False:
            formats = tuple(f for f in formats if f != "OpenAIChatCompletion")
        return formats + (("Converse",) if self.instruct_supported is not False else ())


class EvaluationReport(Artifact):
    """What Evaluator produced for one model: fmeval QA-accuracy metrics per dataset and category, how
    many records were scored and how many failed, and (in a comparison) the differences from the baseline.
    """

    kind: Literal["evaluation"] = Field(default="evaluation", description="Artifact kind.")
    model_id: str = Field(description="The evaluated model (ARN or name).")
    name: str | None = Field(default=None, description="The model's label in a comparison ('fine-tuned').")
    dataset: str | None = Field(default=None, description="Name of the evaluation dataset.")
    dataset_uri: str | None = Field(default=None, description="Where the evaluation records were read.")
    engine: str | None = Field(default=None, description="'fast' or 'fmeval'.")
    metrics: dict[str, dict[str, float | None]] = Field(
        default_factory=dict,
        description="Metric values per dataset or 'dataset/category' key (None: no record was scored).",
    )
    records_uri: str | None = Field(default=None, description="Per-record results (JSONL).")
    record_count: int = Field(default=0, description="Records scored.")
    error_count: int = Field(default=0, description="Records the model failed on (kept, not scored).")
    prompt_template: str | None = Field(
        default=None, description="The fmeval prompt template ($model_input: the question)."
    )
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds spent, per phase.")
    fmeval_scores: dict[str, Any] | None = Field(
        default=None, description="fmeval's own aggregate output (engine 'fmeval' only)."
    )
    config: dict[str, Any] = Field(default_factory=dict, description="The EvalConfig used.")
    baseline: dict[str, Any] | None = Field(default=None, description="Comparison with a baseline model.")

    path_fields: ClassVar[tuple[str, ...]] = ("records_uri",)

    _rows: list[dict[str, Any]] | None = PrivateAttr(default=None)

    @property
    def scores(self) -> dict[str, float | None]:
        """The metrics over the whole dataset."""
        if self.dataset and self.dataset in self.metrics:
            return self.metrics[self.dataset]
        return next(iter(self.metrics.values()), {})

    def records(self) -> list[dict[str, Any]]:
        """Per-record results (prompt, target, output, error, scores): kept in memory after evaluate(),
        else read from ``records_uri``."""
        if self._rows is not None:
            return list(self._rows)
        if not self.records_uri:
            return []
        rows = [json.loads(line) for line in Path(self.records_uri).read_text("utf-8").splitlines() if line]
        return [r for r in rows if r.get("model") in (None, self.name)]


AnyArtifact = Annotated[
    DatasetArtifact | AdapterArtifact | ModelArtifact | ImportedModel | EvaluationReport,
    Field(discriminator="kind"),
]
ANY_ARTIFACT: TypeAdapter[Any] = TypeAdapter(AnyArtifact)


def load_artifact(path: str | Path) -> Artifact:
    """Read any artifact's manifest; the ``kind`` inside decides the class."""
    return Artifact.read(path)
