"""The typed parts of artifacts: token statistics, dropped records, files, LoRA and 4-bit settings,
training metrics, how a merge ran and was checked, and what an upload did.

They were plain dicts once; manifests written then still read, and ``part["key"]`` and
``part.get("key")`` still work, with a :class:`DeprecationWarning`: use the attributes.
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DroppedRecord",
    "FileEntry",
    "LogitsCheck",
    "LoraSettings",
    "MergeChecks",
    "MergeInfo",
    "QuantizationSettings",
    "TokenStats",
    "TrainMetrics",
    "UploadSummary",
    "WeightsCheck",
]


class _Part(BaseModel):
    """A frozen part of a manifest. Unknown keys of older or newer manifests are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class _DictAccess(_Part):
    """The dict access these parts had when they were dicts, kept for old code (deprecated)."""

    def _warn(self, key: str) -> None:
        warnings.warn(
            f"{type(self).__name__} is a typed model now: read .{key} instead of [{key!r}] or .get()",
            DeprecationWarning,
            stacklevel=3,
        )

    def __getitem__(self, key: str) -> Any:
        self._warn(key)
        if key not in type(self).model_fields or getattr(self, key) is None:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self._warn(key)
        value = getattr(self, key, None) if key in type(self).model_fields else None
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in type(self).model_fields and getattr(self, key) is not None


class TokenStats(_Part):
    """Token lengths of the training records, measured with the training tokenizer."""

    min: int = Field(description="Shortest record, in tokens.")
    median: float = Field(description="Median record length.")
    p95: float = Field(description="95th percentile record length.")
    max: int = Field(description="Longest record.")
    max_length: int | None = Field(
        default=None, description="The training max_length they are measured against."
    )
    over_max_length: float = Field(default=0.0, description="Share of records longer than max_length (0..1).")


class DroppedRecord(_Part):
    """One record a dataset build left out, and why."""

    index: int = Field(description="Position of the record in the source (0-based).")
    field: str | None = Field(default=None, description="The field at fault, when one is.")
    detail: str = Field(default="", description="What was wrong, and where (file and line) when known.")


class FileEntry(_Part):
    path: str = Field(description="Path relative to the model directory.")
    size: int = Field(description="Size in bytes.")
    sha256: str = Field(description="Hex sha256 of the content.")


class LoraSettings(_DictAccess):
    """The LoRA adapter as trained."""

    r: int | None = Field(default=None, description="Rank.")
    alpha: float | None = Field(default=None, description="lora_alpha: the update is scaled by alpha / r.")
    dropout: float | None = Field(default=None, description="LoRA dropout.")
    target_modules: list[str] | str | None = Field(
        default=None, description="Adapted modules (or 'all-linear')."
    )
    bias: str | None = Field(default=None, description="Which biases were trained.")
    trainable_parameters: int | None = Field(default=None, description="Trainable parameters.")


class QuantizationSettings(_DictAccess):
    """How the base was quantized to 4 bits while training (QLoRA)."""

    load_in_4bit: bool = Field(default=True, description="4-bit loading.")
    quant_type: str | None = Field(default=None, description="nf4 or fp4.")
    double_quant: bool | None = Field(
        default=None, description="Whether the quantization constants were quantized."
    )
    compute_dtype: str | None = Field(default=None, description="The dtype the 4-bit layers computed in.")
    storage_dtype: str | None = Field(
        default=None, description="The dtype the packed 4-bit weights were stored in."
    )


class TrainMetrics(_DictAccess):
    """What a training run measured."""

    global_step: int = Field(default=0, description="Optimizer steps taken.")
    train_seconds: float | None = Field(default=None, description="Wall time of the run (this process).")
    tokens_seen: float | None = Field(default=None, description="Tokens trained on.")
    train_loss: float | None = Field(default=None, description="Mean of the logged losses.")
    first_loss: float | None = Field(default=None, description="The first logged loss.")
    final_loss: float | None = Field(default=None, description="The last logged loss.")
    tokens_per_second: float | None = Field(default=None, description="Median step throughput after warm-up.")
    peak_memory_gib: float | None = Field(
        default=None, description="Peak GPU memory allocated (GPU runs; rank 0's GPU with several)."
    )
    world_size: int = Field(default=1, description="Processes that trained (one per GPU, or CPU processes).")
    strategy: str | None = Field(default=None, description="ddp or fsdp with several processes; else None.")


class LogitsCheck(_DictAccess):
    """The merged model's logits against base + adapter's, on a few prompts (the in-memory merge)."""

    device: str | None = Field(default=None, description="Where the check ran.")
    max_abs: float | None = Field(default=None, description="Largest absolute logit difference.")
    max_rel: float | None = Field(default=None, description="max_abs relative to the largest logit.")
    top1_agreement: float | None = Field(default=None, description="Share of positions with the same argmax.")
    adapter_effect: float | None = Field(
        default=None, description="Largest logit change the adapter makes to the base."
    )
    error_vs_effect: float | None = Field(default=None, description="max_abs as a share of adapter_effect.")
    prompts: int | None = Field(default=None, description="Prompts compared.")
    tolerance: float | None = Field(default=None, description="The largest max_rel accepted.")
    merged_by_bedrock_ft: int | None = Field(
        default=None, description="LoRA layers merged with bedrock-ft's own float32 arithmetic."
    )


class WeightsCheck(_DictAccess):
    """Merged weights against peft's own merge, tensor by tensor."""

    checked: list[str] = Field(default_factory=list, description="The tensors compared.")
    max_abs: float | None = Field(default=None, description="Largest absolute difference.")
    max_rel: float | None = Field(default=None, description="Largest relative difference.")
    adapter_effect: float | None = Field(default=None, description="Largest change the adapter makes.")
    tolerance: float | None = Field(default=None, description="The bound the differences must stay under.")


class MergeChecks(_DictAccess):
    """The equivalence checks a merge ran."""

    logits: LogitsCheck | None = Field(default=None, description="Logits against base + adapter.")
    weights: WeightsCheck | None = Field(default=None, description="Weights against peft's merge.")


class MergeInfo(_DictAccess):
    """How a merge ran."""

    mode: str | None = Field(default=None, description="memory or streaming.")
    dtype: str | None = Field(default=None, description="The exported dtype.")
    max_shard_size: int | None = Field(default=None, description="Largest shard, in bytes.")
    seconds: float | None = Field(default=None, description="Wall time of the merge.")
    verification: MergeChecks | None = Field(default=None, description="The checks, unless verify=False.")
    untied: list[str] = Field(
        default_factory=list, description="Weights written untied: the adapter changed one side of a tie."
    )
    eos_tokens_added: list[str] = Field(
        default_factory=list, description="Stop tokens added to generation_config.json."
    )


class UploadSummary(_DictAccess):
    """What an import's upload to S3 did."""

    sent: list[str] = Field(default_factory=list, description="Files sent.")
    skipped: list[str] = Field(default_factory=list, description="Files already there, unchanged.")
    deleted: list[str] = Field(default_factory=list, description="Objects deleted (overwrite).")
    bytes_sent: int = Field(default=0, description="Bytes sent.")
    seconds: float = Field(default=0.0, description="Time spent sending.")
    mb_per_s: float | None = Field(default=None, description="Throughput (MB/s), when anything was sent.")
    concurrency: int | None = Field(default=None, description="Parallel requests used.")
