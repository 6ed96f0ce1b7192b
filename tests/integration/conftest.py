"""Fixtures shared by the integration tests: copies of the tiny model, and local stacks started on demand."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import ImportedModel
from bedrock_ft.importing import BedrockImporter, ImportConfig
from bedrock_ft.local import LocalBedrockConfig, LocalStack

SERVICE_ROLE = "arn:aws:iam::123456789012:role/BedrockImport"


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
    """Start stacks with the given settings (``engine``: an inference engine other than transformers,
    such as the scripted one); each is stopped after the test."""
    stacks: list[LocalStack] = []

    def start(*, engine: Any = None, **settings: Any) -> LocalStack:
        settings.setdefault("data_dir", tmp_path / f"data-{len(stacks)}")
        stack = LocalStack(LocalBedrockConfig(**settings), export_env=False, engine=engine).start()
        stacks.append(stack)
        return stack

    yield start
    for stack in reversed(stacks):
        stack.stop()


@pytest.fixture(scope="session")
def embedded_service(
    embedded_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalStack, ImportedModel]]:
    """One local stack for the session with the embedded model imported once, by BedrockImporter, as an
    application would. Shared by the invoke, runtime and evaluation tests: they may call it, but must
    not import more models into it (the AWS CLI test lists exactly this one) or delete it."""
    config = LocalBedrockConfig(idle_unload_seconds=None, data_dir=tmp_path_factory.mktemp("served"))
    with LocalStack(config, export_env=False) as stack, pytest.MonkeyPatch.context() as env:
        for key, value in stack.env.items():  # the stack's dummy credentials, only while importing
            env.setenv(key, value)
        aws = stack.aws_config()
        aws.client("s3").create_bucket(Bucket="served")
        settings = ImportConfig(
            model_name="smollm2",
            s3_uri="s3://served/smollm2/",
            role_arn=SERVICE_ROLE,
            aws=aws,
            poll_interval=0.5,
        )
        imported = BedrockImporter(settings).import_model(embedded_dir)
        env.undo()
        yield stack, imported
