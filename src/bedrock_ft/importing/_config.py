"""ImportConfig: where a local model goes in S3, what Bedrock calls it, and how the import job runs.

Every name the service checks (model, job, role, KMS key, tags, VPC ids) is checked here against
botocore's own shape constraints when the config is made, so a bad name fails before any upload.
Light: importing it imports no torch; botocore's model is read on first validation.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from bedrock_ft.aws import AwsConfig, split_s3_uri
from bedrock_ft.config import BaseConfig, StageFile, parse_size
from bedrock_ft.errors import ConfigError, ConfigProblem

__all__ = [
    "IMPORT_LAYOUT",
    "ChecksumAlgorithm",
    "ImportConfig",
    "VpcConfig",
    "folder_uri",
    "missing_s3_uri",
    "s3_uri_problem",
]

ChecksumAlgorithm = Literal["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MIN_PART = 5 * 2**20  # S3's smallest multipart part
_MAX_PART = 5 * 2**30


def shape_errors(member: str, value: Any) -> list[str]:
    """What CreateModelImportJob's ``member`` shape says is wrong with ``value`` (its own wording)."""
    from bedrock_ft._shapes import operation_model, validate_value

    shape = operation_model("bedrock", "CreateModelImportJob").input_shape
    for part in member.split("."):
        shape = shape.members[part]
    return validate_value(shape, value, member)


def _checked(member: str, value: Any) -> Any:
    errors = shape_errors(member, value)
    if errors:
        raise PydanticCustomError("service_constraint", "{message}", {"message": "; ".join(errors)})
    return value


def s3_uri_problem(value: str, *, whole_bucket: bool = False) -> str | None:
    """What is wrong with ``value`` as an S3 folder (None: nothing). A whole bucket is refused unless
    ``whole_bucket``: overwrite never empties one."""
    if not value.startswith("s3://"):
        return f"{value!r} is not an s3:// URI"
    bucket, _, prefix = value[len("s3://") :].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        return f"{bucket!r} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)"
    if not prefix.strip("/") and not whole_bucket:
        return (
            f"give a prefix for the model's files, e.g. s3://{bucket}/models/my-model/ (a whole bucket is "
            "never used: overwrite would delete what else it holds)"
        )
    if prefix and ("//" in prefix or any(part in (".", "..") for part in prefix.rstrip("/").split("/"))):
        return f"{prefix!r}: empty, '.' or '..' path parts"
    errors = shape_errors("modelDataSource.s3DataSource.s3Uri", folder_uri(value))
    return "; ".join(errors) or None


def missing_s3_uri() -> ConfigError:
    """What a local model without ``s3_uri`` raises."""
    return ConfigError(
        [
            ConfigProblem(
                "s3_uri",
                "not set: a local model is uploaded to s3_uri (s3://bucket/prefix/) before the import. "
                "Set it, or give import_model the s3:// prefix of a model already in S3",
            )
        ]
    )


def folder_uri(value: str) -> str:
    """``value`` ending in '/': the prefix names a folder (``models/m`` never also means ``models/m2``)."""
    return value if value.endswith("/") else value + "/"


class VpcConfig(BaseConfig):
    """The VPC the import job reaches S3 through (optional)."""

    subnet_ids: tuple[str, ...] = Field(description="Subnet ids (1 to 16).")
    security_group_ids: tuple[str, ...] = Field(description="Security group ids (1 to 5).")

    @field_validator("subnet_ids")
    @classmethod
    def _subnets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_checked("vpcConfig.subnetIds", list(value)))

    @field_validator("security_group_ids")
    @classmethod
    def _groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_checked("vpcConfig.securityGroupIds", list(value)))

    def request(self) -> dict[str, Any]:
        return {"subnetIds": list(self.subnet_ids), "securityGroupIds": list(self.security_group_ids)}


class ImportConfig(BaseConfig):
    """Upload a merged model to S3 and import it into Bedrock with Custom Model Import.

    ``BedrockImporter(ImportConfig(...)).import_model(model)`` runs preflight, uploads what S3 lacks,
    runs the import job and returns an :class:`~bedrock_ft.artifacts.ImportedModel`. A model already in
    S3 (``import_model("s3://bucket/prefix/")``) is imported from where it is: nothing is uploaded and
    ``s3_uri`` is not needed. The same config works against AWS and against the local Bedrock: only
    ``aws`` (or the AWS_ENDPOINT_URL_* variables) differs.
    """

    model_name: str = Field(
        description="importedModelName: 1 to 63 letters, digits, '-' and '_', starting with a letter or "
        "digit."
    )
    s3_uri: str | None = Field(
        default=None,
        description="Where a local model's files go: s3://bucket/prefix/. The bucket must exist; the prefix "
        "must be empty, hold this same model (an interrupted upload resumes), or be replaced with "
        "overwrite. Not needed for a model already in S3 (import_model('s3://...')): it is imported from "
        "where it is.",
    )
    role_arn: str = Field(
        description="Service role Bedrock assumes to read the files "
        "(see bedrock_ft.importing.create_import_role)."
    )
    job_name: str | None = Field(
        default=None,
        description="Import job name. Default: the model name plus a hash of the model's files and these "
        "settings, so re-running the same import finds its own job.",
    )
    overwrite: bool = Field(
        default=False,
        description="Replace what s3_uri holds when it is a different model (files not in this model are "
        "deleted, changed ones sent again).",
    )
    concurrency: int = Field(
        default=8, ge=1, le=64, description="Parallel S3 requests: parts of a file and files at once."
    )
    multipart_chunksize: int | str = Field(
        default="16MiB", description="Part size of multipart uploads (5 MiB to 5 GiB): bytes or '16MiB'."
    )
    multipart_threshold: int | str = Field(
        default="16MiB", description="Files at least this big are sent in parallel parts."
    )
    checksum_algorithm: ChecksumAlgorithm = Field(
        default="CRC32",
        description="Checksum S3 verifies on every part it receives. Each object also carries the file's "
        "sha256 in its metadata, which is what skip-unchanged compares.",
    )
    sse_kms_key_id: str | None = Field(
        default=None,
        description="Encrypt the uploaded files with this KMS key (SSE-KMS). The import role then needs "
        "kms:Decrypt on it (create_import_role adds it).",
    )
    kms_key_id: str | None = Field(
        default=None, description="importedModelKmsKeyId: encrypt the imported model with this KMS key."
    )
    job_tags: dict[str, str] = Field(default_factory=dict, description="Tags of the import job.")
    model_tags: dict[str, str] = Field(default_factory=dict, description="Tags of the imported model.")
    vpc: VpcConfig | None = Field(default=None, description="VPC settings for the import job.")
    wait: bool = Field(
        default=True,
        description="Wait for the job to finish. False: return as soon as it is created (status InProgress).",
    )
    timeout: float = Field(
        default=4 * 3600.0, gt=0, description="Seconds to wait for the import job before giving up."
    )
    poll_interval: float = Field(
        default=30.0, gt=0, description="Longest pause between status checks (they start at half a second)."
    )
    on_busy: Literal["wait", "fail"] = Field(
        default="wait",
        description="Bedrock runs one import job at a time per account. When another is running: wait for "
        "it (up to timeout), or fail at once.",
    )
    aws: AwsConfig = Field(default_factory=AwsConfig, description="Region, profile and endpoints.")

    hash_exclude: ClassVar[frozenset[str]] = frozenset(
        {
            "overwrite",
            "concurrency",
            "multipart_chunksize",
            "multipart_threshold",
            "checksum_algorithm",
            "sse_kms_key_id",
            "wait",
            "timeout",
            "poll_interval",
            "on_busy",
            "aws",
        }
    )

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str) -> str:
        return str(_checked("importedModelName", value))

    @field_validator("job_name")
    @classmethod
    def _job_name(cls, value: str | None) -> str | None:
        return value if value is None else str(_checked("jobName", value))

    @field_validator("role_arn")
    @classmethod
    def _role(cls, value: str) -> str:
        return str(_checked("roleArn", value))

    @field_validator("kms_key_id")
    @classmethod
    def _kms(cls, value: str | None) -> str | None:
        return value if value is None else str(_checked("importedModelKmsKeyId", value))

    @field_validator("job_tags", "model_tags")
    @classmethod
    def _tags(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        member = "jobTags" if info.field_name == "job_tags" else "importedModelTags"
        _checked(member, [{"key": k, "value": v} for k, v in value.items()])
        return value

    @field_validator("s3_uri")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = s3_uri_problem(value)
        if problem:
            raise PydanticCustomError("s3_uri", "{m}", {"m": problem})
        return folder_uri(value)

    @field_validator("multipart_chunksize", "multipart_threshold")
    @classmethod
    def _part_size(cls, value: int | str) -> int | str:
        try:
            size = parse_size(value)
        except ValueError as exc:
            raise PydanticCustomError("size", "{m}", {"m": str(exc)}) from None
        if not _MIN_PART <= size <= _MAX_PART:
            raise PydanticCustomError(
                "size", "{m}", {"m": f"{value!r}: S3 parts are 5 MiB to 5 GiB"}
            )  # fmt: skip
        return value

    @property
    def bucket(self) -> str:
        return split_s3_uri(self.upload_uri, folder=True)[0]

    @property
    def prefix(self) -> str:
        """The key prefix, ending in '/'."""
        return split_s3_uri(self.upload_uri, folder=True)[1]

    @property
    def upload_uri(self) -> str:
        """``s3_uri``, which a local model needs: a :class:`ConfigError` naming it when it is not set."""
        if self.s3_uri is None:
            raise missing_s3_uri()
        return self.s3_uri

    @property
    def chunk_bytes(self) -> int:
        return parse_size(self.multipart_chunksize)

    @property
    def threshold_bytes(self) -> int:
        return parse_size(self.multipart_threshold)


IMPORT_LAYOUT = StageFile(
    sections={"import": ImportConfig},
    input_key="model",
    input_hint="give the merge's output directory or a model directory, or the s3:// prefix of a model in S3",
    input_required=True,
)
"""A ``bedrock-ft import`` config file: ``model`` and the ``import`` section (or its fields alone)."""
