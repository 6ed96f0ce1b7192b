"""Typed stage outputs.

Each stage takes an artifact and returns one. An artifact is written as ``manifest.json`` next to the
files it describes, so a stage can run in another process or on another machine (train on a GPU box,
import from a laptop), and a pipeline can skip a stage whose manifest matches its config hash.

Local paths inside the manifest's directory are stored relative to it, so the directory can be moved
or copied elsewhere and read back with correct paths. ``s3://`` URIs are kept as they are.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError

from bedrock_ft._io import atomic_write_text
from bedrock_ft._version import __version__
from bedrock_ft.errors import ArtifactError
from bedrock_ft.preflight import PreflightReport

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
    "ModelArtifact",
    "TokenStats",
    "load_artifact",
]

MANIFEST_NAME = "manifest.json"

A = TypeVar("A", bound="Artifact")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _is_uri(value: str) -> bool:
    return "://" in value


class Artifact(BaseModel):
    """Common fields and the manifest round trip."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = Field(description="Which stage output this is.")
    bedrock_ft_version: str = Field(default=__version__, description="bedrock-ft version that wrote it.")
    created_at: datetime = Field(default_factory=_now, description="When it was made (UTC).")
    config_hash: str | None = Field(
        default=None, description="Hash of the stage config that produced it (BaseConfig.config_hash)."
    )

    # Fields holding a local path or a URI; local paths are stored relative to the manifest.
    path_fields: ClassVar[tuple[str, ...]] = ()

    # --- JSON ------------------------------------------------------------------------------------

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls: type[A], text: str, *, source: str = "<string>") -> A:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(
                f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        return cls._validate(data, source)

    @classmethod
    def _validate(cls: type[A], data: Any, source: str) -> A:
        if not isinstance(data, dict) or "kind" not in data:
            raise ArtifactError(f"{source}: not a bedrock-ft manifest (no 'kind')")
        expected = cls.model_fields["kind"].default
        if cls is not Artifact and data["kind"] != expected:
            raise ArtifactError(f"{source}: holds a {data['kind']!r} artifact, expected {expected!r}")
        try:
            if cls is Artifact:
                return cast(A, _ANY.validate_python(data))
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
            )
            raise ArtifactError(f"{source}: invalid {data['kind']!r} manifest: {problems}") from None

    # --- manifest files --------------------------------------------------------------------------

    def write(self, directory: str | Path) -> Path:
        """Write ``manifest.json`` into ``directory`` atomically; returns the manifest path."""
        directory = Path(directory).resolve()
        updates = {
            name: _relativize(value, directory)
            for name in self.path_fields
            if isinstance(value := getattr(self, name), str)
        }
        manifest = directory / MANIFEST_NAME
        atomic_write_text(manifest, self.model_copy(update=updates).to_json())
        return manifest

    @classmethod
    def read(cls: type[A], path: str | Path) -> A:
        """Read a manifest, given the file or the directory holding it."""
        path = Path(path)
        manifest = path / MANIFEST_NAME if path.is_dir() else path
        try:
            text = manifest.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArtifactError(f"{manifest}: no manifest here (was the stage run to the end?)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{manifest}: can't read: {exc}") from None
        artifact = cls.from_json(text, source=str(manifest))
        base = manifest.parent.resolve()
        updates = {
            name: _absolutize(value, base)
            for name in artifact.path_fields
            if isinstance(value := getattr(artifact, name), str)
        }
        return artifact.model_copy(update=updates)


def _relativize(value: str, directory: Path) -> str:
    if _is_uri(value):
        return value
    path = Path(value).expanduser().resolve()
    if path.is_relative_to(directory):
        return path.relative_to(directory).as_posix() or "."
    return str(path)


def _absolutize(value: str, base: Path) -> str:
    if _is_uri(value) or Path(value).is_absolute():
        return value
    return str((base / value).resolve())


class TokenStats(BaseModel):
    """Token lengths of the training records, measured with the training tokenizer."""

    model_config = ConfigDict(frozen=True)

    min: int = Field(description="Shortest record, in tokens.")
    median: float = Field(description="Median record length.")
    p95: float = Field(description="95th percentile record length.")
    max: int = Field(description="Longest record.")
    max_length: int | None = Field(
        default=None, description="The training max_length they are measured against."
    )
    over_max_length: float = Field(default=0.0, description="Share of records longer than max_length (0..1).")


class DroppedRecord(BaseModel):
    """One record a dataset build left out, and why."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(description="Position of the record in the source (0-based).")
    field: str | None = Field(default=None, description="The field at fault, when one is.")
    detail: str = Field(default="", description="What was wrong, and where (file and line) when known.")


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
    lora: dict[str, Any] = Field(
        default_factory=dict, description="LoRA settings used (r, alpha, targets...)."
    )
    quantization: dict[str, Any] | None = Field(
        default=None, description="4-bit settings used during training; None for plain LoRA."
    )
    train_metrics: dict[str, float] = Field(default_factory=dict, description="Final training metrics.")
    checkpoint_dir: str | None = Field(default=None, description="Where resumable checkpoints are.")
    chat_template: str | None = Field(default=None, description="Chat template the adapter was trained with.")

    path_fields: ClassVar[tuple[str, ...]] = ("adapter_dir", "checkpoint_dir")


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str = Field(description="Path relative to the model directory.")
    size: int = Field(description="Size in bytes.")
    sha256: str = Field(description="Hex sha256 of the content.")


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
    merge: dict[str, Any] = Field(
        default_factory=dict,
        description="How it was merged: mode, seconds, shard size, and the equivalence check's result.",
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
    upload: dict[str, Any] = Field(
        default_factory=dict,
        description="What the upload did: files sent and skipped, bytes, seconds (empty when not uploaded).",
    )


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
_ANY: TypeAdapter[Any] = TypeAdapter(AnyArtifact)


def load_artifact(path: str | Path) -> Artifact:
    """Read any artifact's manifest; the ``kind`` inside decides the class."""
    return Artifact.read(path)
