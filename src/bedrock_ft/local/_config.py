"""Settings of the local Bedrock: where it listens, where it keeps state, and how real it behaves."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from bedrock_ft.config import BaseConfig

__all__ = ["LocalBedrockConfig"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class LocalBedrockConfig(BaseConfig):
    """How the local Bedrock runs. Every default mirrors the real service where there is one."""

    allow_remote: bool = Field(
        default=False, description="Allow binding a non-loopback address. The server checks no signatures."
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address to bind. Loopback only unless allow_remote is set: the server has no auth.",
    )
    port: int = Field(
        default=0, ge=0, le=65535, description="Port for the Bedrock server; 0 picks a free one."
    )
    s3_port: int = Field(default=0, ge=0, le=65535, description="Port for the local S3 (moto); 0 picks one.")
    data_dir: Path | None = Field(
        default=None,
        description="Where jobs, imported models and their weights are kept across restarts. "
        "Default: a temporary directory removed when the stack stops.",
    )
    region: str = Field(default="us-east-1", description="Region in ARNs and in the exported AWS_REGION.")
    account_id: str = Field(
        default="123456789012", pattern=r"^[0-9]{12}$", description="Account id used in ARNs."
    )
    max_concurrent_import_jobs: int = Field(
        default=1, ge=1, description="Import jobs in progress at once (Bedrock: 1, not adjustable)."
    )
    max_imported_models: int = Field(
        default=3, ge=1, description="Imported models per account (Bedrock default: 3, adjustable)."
    )
    cold_start: bool = Field(
        default=True,
        description="An unloaded model answers ModelNotReadyException (HTTP 429) while it loads in the "
        "background, as Bedrock does. False: the first call waits for the load instead.",
    )
    idle_unload_seconds: float | None = Field(
        default=300.0,
        gt=0,
        description="Unload a model after this many idle seconds (scale to zero). None keeps models loaded.",
    )
    throttle_rps: float | None = Field(
        default=None,
        gt=0,
        description="Answer ThrottlingException above this many runtime requests per second (None: never).",
    )
    legacy_invoke_format: bool = Field(
        default=False,
        description="Import models as Bedrock did before 2025-11-11: they accept only their base "
        "family's native body (Llama's or Mistral's), not the three OpenAI-compatible formats.",
    )
    engine: Literal["transformers"] = Field(
        default="transformers", description="Inference engine (see bedrock_ft.local.engine)."
    )
    device: str = Field(default="auto", description="torch device for inference: auto, cpu, cuda, cuda:1 ...")
    max_new_tokens_limit: int = Field(
        default=4096, ge=1, description="Largest max_tokens / max_gen_len a request may ask for."
    )
    checkpoint_sync_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often a local training job's checkpoint directory is synced to its checkpoint "
        "S3 URI (SageMaker syncs continuously).",
    )
    spot_interruption_after_checkpoints: int | None = Field(
        default=None,
        ge=1,
        description="Rehearse a spot interruption: each managed-spot training job is interrupted once, as "
        "soon as this many complete checkpoints (trainer_state.json written) reached its checkpoint URI, "
        "then restarted with them restored. TrainingJobs.interrupt(name) does it on demand.",
    )
    debug: bool = Field(
        default=False, description="Log request bodies. Off by default: bodies hold users' prompts."
    )

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if value not in _LOOPBACK and not info.data.get("allow_remote", False):
            raise ValueError(
                f"{value!r} is not a loopback address; set allow_remote=True to bind it "
                "(the local Bedrock checks no credentials)"
            )
        return value
