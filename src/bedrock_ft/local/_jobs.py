"""What an import job does in the background: copy the model out of S3, check it, register it.

The copy lands in ``staging/<job id>`` and is renamed into place only after every preflight rule
passed, so a failed or killed job never leaves a half-imported model behind.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from bedrock_ft.local._store import JobRecord, ModelRecord, Store, now

__all__ = ["ImportFailed", "parse_s3_uri", "run_import", "safe_relative_key"]

log = logging.getLogger("bedrock_ft.local")

_GIB = 1 << 30
_CMU_BYTES = 8 * _GIB
_MAX_BYTES = 200 * 10**9
"""Checked before copying; preflight checks the exact per-architecture limit afterwards."""
"""A rough Custom Model Unit size: Bedrock gives an 8B bf16 model (16 GB) 2 CMUs per copy."""


class ImportFailed(Exception):
    """The job ends Failed with this message."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, prefix), the prefix ending in ``/`` unless empty."""
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


def safe_relative_key(key: str, prefix: str) -> PurePosixPath:
    """The path of ``key`` under ``prefix``; refuses anything that would leave the model directory."""
    relative = key[len(prefix) :]
    parts = relative.split("/")
    if (
        not relative
        or "\\" in relative
        or "\x00" in relative
        or any(part in ("", ".", "..") for part in parts)
        or relative.startswith("/")
    ):
        raise ImportFailed(f"The S3 key {key!r} is not a safe file name inside the model directory.")
    return PurePosixPath(*parts)


def list_model_objects(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    paginator = s3.get_paginator("list_objects_v2")
    objects: list[dict[str, Any]] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        objects.extend(obj for obj in page.get("Contents", []) if not obj["Key"].endswith("/"))
    return objects


def _source_objects(s3: Any, s3_uri: str, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """The model's objects; a source that can't be read fails the job, with Bedrock's reasons."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        objects = list_model_objects(s3, bucket, prefix)
    except BotoCoreError as exc:  # no credentials, S3 unreachable
        raise ImportFailed(f"Can't read {s3_uri}: {exc}") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            raise ImportFailed(f"The S3 bucket {bucket} does not exist.") from None
        raise ImportFailed(f"Can't read {s3_uri}: {code} (check the import role's access)") from None
    if not objects:
        raise ImportFailed(f"No model files were found at {s3_uri}.")
    if not any(obj["Key"] == f"{prefix}config.json" for obj in objects):
        raise ImportFailed(f"The S3 location {s3_uri} has no config.json at its top level.")
    return objects


def run_import(store: Store, job: JobRecord, s3: Any, *, legacy_format: bool) -> ModelRecord:
    """Copy, check and register the job's model. Raises ImportFailed with the failureMessage."""
    from bedrock_ft.architectures import architecture_for_config
    from bedrock_ft.errors import RegistryError
    from bedrock_ft.preflight import check_model_dir

    bucket, prefix = parse_s3_uri(job.s3_uri)
    staging = store.staging_dir(job.id)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        objects = _source_objects(s3, job.s3_uri, bucket, prefix)
        listed = sum(int(obj.get("Size", 0)) for obj in objects)
        free = shutil.disk_usage(staging).free
        if listed > free:
            raise ImportFailed(
                f"The model at {job.s3_uri} is {listed / _GIB:.1f} GiB; the local Bedrock's data directory "
                f"has {free / _GIB:.1f} GiB free."
            )
        if listed > _MAX_BYTES:
            raise ImportFailed(
                f"The model at {job.s3_uri} is {listed / 1e9:.0f} GB, over Bedrock's 200 GB limit."
            )
        total = 0
        for obj in objects:
            relative = safe_relative_key(obj["Key"], prefix)
            target = staging / Path(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            total += target.stat().st_size
        report = check_model_dir(staging)
        if report.errors:
            raise ImportFailed("; ".join(str(finding) for finding in report.errors)[:2048])
        config = json.loads((staging / "config.json").read_text(encoding="utf-8"))
        try:
            arch = architecture_for_config(config)
        except RegistryError as exc:
            raise ImportFailed(str(exc)) from None
        invoke_format = "openai"
        if legacy_format and arch.native_format is not None:
            invoke_format = arch.native_format.name
        model_id = job.model_arn.rsplit("/", 1)[1] if job.model_arn else ""
        record = ModelRecord(
            id=model_id,
            arn=job.model_arn or "",
            name=job.model_name,
            job_name=job.name,
            job_arn=job.arn,
            s3_uri=job.s3_uri,
            creation_time=now(),
            architecture=arch.name,
            instruct_supported=_has_chat_template(staging),
            invoke_format=invoke_format,
            custom_model_units=max(1, math.ceil(total / _CMU_BYTES)),
            weight_bytes=total,
            tags=list(job.request.get("importedModelTags") or []),
        )
        weights = store.weights_dir(model_id)
        weights.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(weights)
        store.save_model(record)
        return record
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _has_chat_template(model_dir: Path) -> bool:
    from bedrock_ft.local.engine import chat_template_of

    try:
        return chat_template_of(model_dir) is not None
    except (OSError, ValueError):
        return False
