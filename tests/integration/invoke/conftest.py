"""Fixtures for ImportedModelClient: models imported into local stacks with BedrockImporter, the way an
application would get them, and clients aimed at those stacks."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import ImportedModel
from bedrock_ft.importing import BedrockImporter, ImportConfig
from bedrock_ft.local import LocalStack
from bedrock_ft.runtime import ImportedModelClient, InvokeConfig

ROLE = "arn:aws:iam::123456789012:role/BedrockImport"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def import_into(stack: LocalStack, model_dir: Path, name: str) -> ImportedModel:
    """Import ``model_dir`` with the SDK's own importer (credentials set only for the call)."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in stack.env.items():
            env.setenv(key, value)
        aws = stack.aws_config()
        s3 = aws.client("s3")
        bucket = f"invoke-{name}"
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):  # moto's state is per process
            s3.create_bucket(Bucket=bucket)
        config = ImportConfig(
            model_name=name, s3_uri=f"s3://{bucket}/{name}/", role_arn=ROLE, aws=aws, poll_interval=0.5
        )
        return BedrockImporter(config).import_model(model_dir)


def as_mistral(source: Path, target: Path) -> Path:
    """The embedded model relabelled as Mistral: same weights (Mistral is Llama's layout), same
    tokenizer, so it answers the same; imported, it is served with Mistral's native body."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=None)
    for key in ("mlp_bias", "attention_bias", "pretraining_tp"):
        config.pop(key, None)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.fixture(scope="session")
def served(embedded_service: tuple[LocalStack, ImportedModel]) -> tuple[LocalStack, ImportedModel]:
    """The embedded model imported into the session's local stack (new invoke formats)."""
    return embedded_service


@pytest.fixture
def make_client(
    served: tuple[LocalStack, ImportedModel], aws_credentials: None
) -> Callable[..., ImportedModelClient]:
    stack, imported = served

    def make(model: ImportedModel | None = None, **settings: Any) -> ImportedModelClient:
        return ImportedModelClient(model or imported, InvokeConfig(aws=stack.aws_config(), **settings))

    return make


@pytest.fixture
def client(make_client: Callable[..., ImportedModelClient]) -> ImportedModelClient:
    """A client of the embedded model; greedy by default, so answers are reproducible."""
    made = make_client(generation={"temperature": 0.0, "max_tokens": 24})
    made.warm_up()
    return made
