"""MergeConfig: where the merged model goes, in what precision, and how it is merged and checked.

Light: importing it imports no torch.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from bedrock_ft.config import BaseConfig, StageFile, parse_size

__all__ = ["MERGE_LAYOUT", "MergeConfig", "MergeDtype", "parse_size"]

MergeDtype = Literal["bfloat16", "float16", "float32"]


class MergeConfig(BaseConfig):
    """Merge a LoRA adapter into its full-precision base and export what Custom Model Import accepts.

    ``AdapterMerger(MergeConfig(...)).merge(adapter)`` writes ``output_dir/model/`` (the Bedrock
    export) and ``output_dir/manifest.json`` (the :class:`~bedrock_ft.artifacts.ModelArtifact`).
    """

    output_dir: str = Field(
        default="bedrock-ft-runs/merged",
        description="Where the merge goes: the model in output_dir/model, the manifest in output_dir.",
    )
    base_model: str | None = Field(
        default=None,
        description="The full-precision base to merge into: a directory, a hub id or 'embedded'. Default: "
        "the base the adapter was trained on (from its manifest or adapter_config.json).",
    )
    dtype: MergeDtype = Field(
        default="bfloat16",
        description="Precision of the merged weights. Bedrock accepts bfloat16, float16 and float32. The "
        "merge itself is computed in float32 and rounded once.",
    )
    mode: Literal["auto", "memory", "streaming"] = Field(
        default="auto",
        description="memory: load the whole base, merge, compare logits. streaming: one tensor at a time "
        "from the safetensors shards, so RAM stays near the adapter's size whatever the model's. auto: "
        "memory when the model fits in the memory available, else streaming.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where the memory mode loads the model (auto: a GPU when there is one and it fits). "
        "Streaming always runs on the CPU: it is bound by disk, not compute.",
    )
    max_shard_size: int | str = Field(
        default="2GB",
        description="Largest safetensors shard: bytes, or a size such as '2GB' (10^9) or '500MiB'.",
    )
    overwrite: bool = Field(
        default=False,
        description="Replace an existing merge in output_dir (only a directory holding a merge manifest, or "
        "an empty one, is ever replaced).",
    )
    reuse: bool = Field(
        default=False,
        description="If output_dir already holds a merge of the same adapter, base and settings, return it "
        "instead of refusing.",
    )
    verify: bool = Field(
        default=True,
        description="Check the result: both modes compare a sample of the written weights with peft's own "
        "merge of them; the memory mode also compares the merged model's logits with base+adapter's on fixed "
        "prompts.",
    )
    verify_layers: int = Field(
        default=4, ge=1, le=1000, description="How many adapted weights the weight check recomputes."
    )
    tolerance: float | None = Field(
        default=None,
        gt=0,
        description="Largest relative logit difference the memory-mode check accepts (max |merged - "
        "unmerged| / max |unmerged|). Default: by dtype (float32 1e-3, float16 2e-2, bfloat16 0.1).",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Shards written in parallel (default: one per CPU core, up to 8).",
    )
    check_bedrock: bool = Field(
        default=True,
        description="Refuse to publish a merge that Custom Model Import preflight rejects (the findings are "
        "recorded in the manifest either way).",
    )

    hash_exclude: ClassVar[frozenset[str]] = frozenset(
        {
            "output_dir",
            "overwrite",
            "reuse",
            "mode",
            "device",
            "verify",
            "verify_layers",
            "tolerance",
            "workers",
        }
    )

    @field_validator("max_shard_size")
    @classmethod
    def _shard_size(cls, value: Any) -> Any:
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise PydanticCustomError("size", "{message}", {"message": str(exc)}) from None
        if size < 1024:
            raise PydanticCustomError(
                "size", "{message}", {"message": f"{value!r} is under 1 KiB; shards that small help nobody"}
            )
        return value

    @property
    def shard_bytes(self) -> int:
        return parse_size(self.max_shard_size)


MERGE_LAYOUT = StageFile(
    sections={"merge": MergeConfig},
    input_key="adapter",
    input_hint="give the adapter's run directory, manifest or adapter directory",
    input_required=True,
)
"""A ``bedrock-ft merge`` config file: ``adapter`` and the ``merge`` section (or its fields alone)."""
