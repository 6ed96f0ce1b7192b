"""Fixtures for the local Bedrock: stacks, clients, and models uploaded to the local S3."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from bedrock_ft.local import LocalBedrockConfig, LocalStack

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
def tiny_model_dir(embedded_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real but tiny Llama (random weights, the embedded model's tokenizer): fast to copy and load."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    data = json.loads((out / "config.json").read_text())
    data["torch_dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(data))
    for name in TOKENIZER_FILES:
        shutil.copy(embedded_dir / name, out / name)
    return out


@pytest.fixture
def make_model(tiny_model_dir: Path, tmp_path: Path) -> Callable[..., Path]:
    """A copy of the tiny model with config.json changed, and files added or removed."""

    def make(
        config: dict[str, Any] | None = None,
        *,
        add: dict[str, bytes] | None = None,
        remove: tuple[str, ...] = (),
    ) -> Path:
        directory = tmp_path / f"model-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tiny_model_dir, directory)
        if config:
            data = json.loads((directory / "config.json").read_text())
            data.update(config)
            (directory / "config.json").write_text(json.dumps(data))
        for name, content in (add or {}).items():
            (directory / name).write_bytes(content)
        for name in remove:
            (directory / name).unlink()
        return directory

    return make


@pytest.fixture
def new_stack(tmp_path: Path) -> Iterator[Callable[..., LocalStack]]:
    """Start stacks with the given settings; each is stopped after the test."""
    stacks: list[LocalStack] = []

    def start(**settings: Any) -> LocalStack:
        settings.setdefault("data_dir", tmp_path / f"data-{len(stacks)}")
        stack = LocalStack(LocalBedrockConfig(**settings), export_env=False).start()
        stacks.append(stack)
        return stack

    yield start
    for stack in reversed(stacks):
        stack.stop()


@pytest.fixture(scope="module")
def embedded_stack(embedded_dir: Path) -> Iterator[tuple[LocalStack, str]]:
    """One stack with the embedded model imported (cold, as after a real import)."""
    with LocalStack(LocalBedrockConfig(idle_unload_seconds=None), export_env=False) as stack:
        uri = upload_dir(stack, embedded_dir, "smollm2")
        job = import_model(stack, uri, "smollm2")
        assert job["status"] == "Completed", job.get("failureMessage")
        yield stack, job["importedModelArn"]
