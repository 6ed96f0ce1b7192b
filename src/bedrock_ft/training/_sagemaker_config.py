"""SageMakerConfig: where and how a training job runs (``TrainingConfig(backend="sagemaker")``).

Every value that reaches CreateTrainingJob is checked here against SageMaker's own service model
(botocore's ``sagemaker`` shapes: patterns, lengths, enums), which botocore itself does not check, so a
bad instance type or role ARN is a config error before anything is uploaded.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from bedrock_ft.aws import AwsConfig
from bedrock_ft.config import BaseConfig

__all__ = ["SageMakerConfig", "request_errors"]

_TIMESTAMP_SUFFIX = 15  # ModelTrainer appends "-YYYYmmddHHMMSS" to base_job_name
_IMAGE_FRAMEWORK = ("pytorch", "2.8.0", "py312")  # the PyTorch training image the pinned stack runs on


def request_errors(path: str, value: Any) -> list[str]:
    """What CreateTrainingJob's member at ``path`` (dotted) says is wrong with ``value``."""
    from bedrock_ft._shapes import operation_model, validate_value

    shape = operation_model("sagemaker", "CreateTrainingJob").input_shape
    for part in path.split("."):
        shape = shape.members[part]
    return validate_value(shape, value, path)


def _checked(path: str, value: Any) -> Any:
    errors = request_errors(path, value)
    if errors:
        raise PydanticCustomError("service_constraint", "{message}", {"message": "; ".join(errors)})
    return value


def _s3(value: str, what: str) -> str:
    from bedrock_ft.aws import split_s3_uri

    if not value.startswith("s3://"):
        raise PydanticCustomError("s3_uri", "{m}", {"m": f"{value!r} is not an s3:// URI ({what})"})
    bucket, _ = split_s3_uri(value, folder=True)
    if not bucket:
        raise PydanticCustomError("s3_uri", "{m}", {"m": f"{value!r} names no bucket ({what})"})
    return value.rstrip("/")


class SageMakerConfig(BaseConfig):
    """A SageMaker training job: instance, spot, IAM, S3 locations, image and what the job writes."""

    role_arn: str = Field(
        description="Execution role the job runs as: it reads the dataset channel and writes the output and "
        "checkpoint prefixes (docs/sagemaker.md lists the policy)."
    )
    output_s3_uri: str = Field(
        description="s3://bucket/prefix for the job's outputs: <prefix>/<job>/output/model/ holds the "
        "adapter "
        "(and the merged model with merge_in_job), uncompressed. The dataset and code are uploaded under it "
        "too, unless they are already in S3."
    )
    instance_type: str = Field(
        default="ml.g5.2xlarge",
        description="Training instance type (one A10G 24 GB fits Mistral-7B QLoRA). With several GPUs the "
        "job trains with backend='accelerate' across them.",
    )
    instance_count: int = Field(
        default=1, ge=1, le=1, description="Instances: 1 (multi-node training is not offered yet)."
    )
    volume_size_gb: int = Field(
        default=100,
        ge=1,
        description="EBS volume per instance: base model, checkpoints and the merged export.",
    )
    max_runtime_s: int = Field(
        default=24 * 3600,
        ge=1,
        description="StoppingCondition.MaxRuntimeInSeconds: the job is stopped after it.",
    )
    spot: bool = Field(
        default=False,
        description="Managed spot training: up to ~70% cheaper; an interrupted job restarts from its last "
        "checkpoint in checkpoint_s3_uri.",
    )
    max_wait_s: int | None = Field(
        default=None,
        ge=1,
        description="With spot: the longest the job may take, waiting for capacity included. Must be at "
        "least "
        "max_runtime_s. Default: twice max_runtime_s.",
    )
    checkpoint_s3_uri: str | None = Field(
        default=None,
        description="Where /opt/ml/checkpoints is synced. A job given the same URI resumes from its last "
        "checkpoint. Default: <output_s3_uri>/checkpoints/<run hash>, so re-running the same training "
        "resumes it.",
    )
    base_job_name: str = Field(
        default="bedrock-ft",
        description="Job name stem; the SDK appends a timestamp. Letters, digits and '-', at most 48 "
        "characters.",
    )
    image_uri: str | None = Field(
        default=None,
        description="Training image. Default: the sagemaker SDK's PyTorch 2.8 training image for the region "
        "and instance type; the library and the pinned training stack are pip-installed on top.",
    )
    requirements: tuple[str, ...] = Field(
        default=(),
        description="Extra requirement lines for the job's requirements.txt (after the pinned training "
        "stack).",
    )
    library_wheel: str | None = Field(
        default=None,
        description="A bedrock-ft wheel to install in the job instead of the released version of this one "
        "(for unreleased builds): it is shipped with the job's code.",
    )
    kms_key_id: str | None = Field(default=None, description="KMS key for the output and the volume.")
    subnets: tuple[str, ...] = Field(default=(), description="VPC subnets (with security_group_ids).")
    security_group_ids: tuple[str, ...] = Field(default=(), description="VPC security groups.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on the training job.")
    environment: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables in the job's container."
    )
    merge_in_job: bool = Field(
        default=False,
        description="Also merge the adapter in the job and write the merged bf16 model (Bedrock's export) to "
        "<output>/model/merged/; BedrockImporter imports it from there, with no download.",
    )
    poll_interval_s: float = Field(
        default=15.0, gt=0, description="Seconds between status checks and log reads while watching the job."
    )
    aws: AwsConfig = Field(
        default_factory=AwsConfig, description="Region, profile and endpoints for SageMaker, S3 and Logs."
    )
    sdk_telemetry: bool = Field(
        default=True,
        description="Let the sagemaker SDK send its usage telemetry to AWS (its default). Always off when "
        "the "
        "SageMaker endpoint is a local one (bedrock_ft.local).",
    )

    # Where and how the job runs, not what it learns.
    hash_exclude = frozenset(
        {
            "instance_type", "instance_count", "volume_size_gb", "max_runtime_s", "spot", "max_wait_s",
            "image_uri", "requirements", "library_wheel", "kms_key_id", "subnets", "security_group_ids",
            "tags", "environment", "poll_interval_s", "sdk_telemetry", "role_arn", "base_job_name", "aws",
        }
    )  # fmt: skip

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str) -> str:
        return str(_checked("RoleArn", value))

    @field_validator("instance_type")
    @classmethod
    def _instance(cls, value: str) -> str:
        return str(_checked("ResourceConfig.InstanceType", value))

    @field_validator("output_s3_uri")
    @classmethod
    def _output(cls, value: str) -> str:
        return str(_checked("OutputDataConfig.S3OutputPath", _s3(value, "output_s3_uri")))

    @field_validator("checkpoint_s3_uri")
    @classmethod
    def _checkpoint(cls, value: str | None) -> str | None:
        return (
            None
            if value is None
            else str(_checked("CheckpointConfig.S3Uri", _s3(value, "checkpoint_s3_uri")))
        )

    @field_validator("base_job_name")
    @classmethod
    def _job_name(cls, value: str) -> str:
        stem = value + "-20260101000000"
        errors = request_errors("TrainingJobName", stem)
        if errors or len(stem) > 63:
            raise PydanticCustomError(
                "service_constraint",
                "{m}",
                {
                    "m": f"{value!r}: a training job name is 1-63 letters, digits and '-' (pattern "
                    "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}), and the SDK appends a 15-character timestamp, so "
                    f"base_job_name may be at most {63 - _TIMESTAMP_SUFFIX} characters"
                },
            )
        return value

    @field_validator("kms_key_id")
    @classmethod
    def _kms(cls, value: str | None) -> str | None:
        return None if value is None else str(_checked("OutputDataConfig.KmsKeyId", value))

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        _checked("Tags", [{"Key": k, "Value": v} for k, v in value.items()])
        return value

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        _checked("Environment", value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SageMakerConfig:
        if self.max_wait_s is not None and not self.spot:
            raise PydanticCustomError(
                "sagemaker_config", "{m}", {"m": "max_wait_s applies only with spot=True"}
            )
        if self.spot and self.max_wait_s is not None and self.max_wait_s < self.max_runtime_s:
            raise PydanticCustomError(
                "sagemaker_config",
                "{m}",
                {
                    "m": f"max_wait_s ({self.max_wait_s}) is shorter than max_runtime_s "
                    f"({self.max_runtime_s}): "
                    "SageMaker requires the spot wait to cover the whole runtime"
                },
            )
        if bool(self.subnets) != bool(self.security_group_ids):
            raise PydanticCustomError(
                "sagemaker_config", "{m}", {"m": "a VPC needs both subnets and security_group_ids"}
            )
        if self.subnets:
            _checked(
                "VpcConfig",
                {"Subnets": list(self.subnets), "SecurityGroupIds": list(self.security_group_ids)},
            )
        return self

    @property
    def wait_limit_s(self) -> int | None:
        """MaxWaitTimeInSeconds: spot jobs only."""
        if not self.spot:
            return None
        return self.max_wait_s if self.max_wait_s is not None else 2 * self.max_runtime_s

    @staticmethod
    def image_framework() -> tuple[str, str, str]:
        """(framework, version, py_version) of the default training image."""
        return _IMAGE_FRAMEWORK
