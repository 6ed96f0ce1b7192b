"""Fixtures for the local Bedrock: stacks, clients, and models uploaded to the local S3."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from bedrock_ft import ImportedModel
from bedrock_ft.local import LocalStack

ROLE = "arn:aws:iam::123456789012:role/BedrockImport"
BUCKET = "models"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def client(stack: LocalStack, service: str, *, attempts: int = 1) -> Any:
    """A real boto3 client aimed at the stack; one attempt, so a test sees every error the server sends."""
    url = stack.s3_url if service == "s3" else stack.bedrock_url
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=stack.config.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}, read_timeout=300),
    )


def upload_dir(stack: LocalStack, directory: Path, prefix: str, bucket: str = BUCKET) -> str:
    s3 = client(stack, "s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(directory).as_posix()}")
    return f"s3://{bucket}/{prefix}/"


def wait_for_job(stack: LocalStack, job_arn: str, timeout: float = 120) -> dict[str, Any]:
    bedrock = client(stack, "bedrock")
    deadline = time.monotonic() + timeout
    while True:
        job = bedrock.get_model_import_job(jobIdentifier=job_arn)
        if job["status"] != "InProgress":
            return dict(job)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{job_arn} still InProgress")
        time.sleep(0.1)


def import_model(stack: LocalStack, s3_uri: str, name: str) -> dict[str, Any]:
    bedrock = client(stack, "bedrock")
    arn = bedrock.create_model_import_job(
        jobName=f"job-{name}",
        importedModelName=name,
        roleArn=ROLE,
        modelDataSource={"s3DataSource": {"s3Uri": s3_uri}},
    )["jobArn"]
    return wait_for_job(stack, arn)


def invoke_until_ready(
    runtime: Any, model_arn: str, body: dict[str, Any], timeout: float = 120
) -> dict[str, Any]:
    """InvokeModel, retrying ModelNotReadyException as a client must after a cold start."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = runtime.invoke_model(modelId=model_arn, body=json.dumps(body))
            return dict(json.loads(response["body"].read()))
        except runtime.exceptions.ModelNotReadyException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def embedded_stack(embedded_service: tuple[LocalStack, ImportedModel]) -> tuple[LocalStack, str]:
    """The session's local stack with the embedded model imported, and that model's ARN."""
    stack, imported = embedded_service
    return stack, str(imported.model_arn)
