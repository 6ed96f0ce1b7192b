"""Fixtures for BedrockImporter: a local stack with a bucket, models to import, and a check of every
request the SDK sends against botocore's service model (patterns and lengths, which botocore skips)."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.importing import ImportConfig
from bedrock_ft.local import LocalStack

ROLE = "arn:aws:iam::123456789012:role/BedrockImport"
BUCKET = "models"

StackFactory = Callable[..., LocalStack]


class RequestLog:
    """Every bedrock, iam and sts request made through bedrock_ft's clients, and what broke its shape."""

    def __init__(self) -> None:
        self.operations: list[str] = []
        self.params: list[tuple[str, dict[str, Any]]] = []
        self.violations: list[str] = []

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        from bedrock_ft._shapes import input_errors

        service = model.service_model.service_name
        if service not in ("bedrock", "iam", "sts"):
            return
        self.operations.append(f"{service}.{model.name}")
        self.params.append((f"{service}.{model.name}", dict(params)))
        self.violations += [f"{service}.{model.name}: {e}" for e in input_errors(service, model.name, params)]


@pytest.fixture
def request_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[RequestLog]:
    """Hooks every boto3 session bedrock_ft makes; the test fails if a request broke its shape."""
    import bedrock_ft.aws as aws_module

    log = RequestLog()
    original = aws_module._new_session

    def new_session(config: Any) -> Any:
        session = original(config)
        session.events.register("before-parameter-build", log)
        return session

    monkeypatch.setattr(aws_module, "_new_session", new_session)
    aws_module.clear_client_cache()
    yield log
    aws_module.clear_client_cache()
    assert not log.violations, log.violations


@pytest.fixture
def stack(aws_credentials: None, new_stack: StackFactory, request_log: RequestLog) -> LocalStack:
    """A fresh local S3 and Bedrock with the bucket ``models``.

    moto keeps its state per process, shared by every server it runs: it is reset here, so each test
    starts from an empty S3 and IAM.
    """
    started = new_stack(idle_unload_seconds=None)
    urllib.request.urlopen(urllib.request.Request(f"{started.s3_url}/moto-api/reset", method="POST")).close()
    started.aws_config().client("s3").create_bucket(Bucket=BUCKET)
    return started


@pytest.fixture
def import_config(stack: LocalStack) -> Callable[..., ImportConfig]:
    """An ImportConfig aimed at the stack; keyword arguments change it."""

    def make(**changes: Any) -> ImportConfig:
        settings: dict[str, Any] = {
            "model_name": "tiny",
            "s3_uri": f"s3://{BUCKET}/tiny/",
            "role_arn": ROLE,
            "aws": stack.aws_config(),
            "poll_interval": 0.5,
            "timeout": 120,
        }
        settings.update(changes)
        return ImportConfig(**settings)

    return make


def keys(stack: LocalStack, prefix: str = "", bucket: str = BUCKET) -> list[str]:
    s3 = stack.aws_config().client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def job_names(stack: LocalStack) -> list[str]:
    jobs = stack.aws_config().client("bedrock").list_model_import_jobs()["modelImportJobSummaries"]
    return sorted(job["jobName"] for job in jobs)


@pytest.fixture(scope="session")
def sharded_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid model of five ~6 MB shards plus index: enough bytes to stop an upload half-way."""
    import torch
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("sharded")
    for path in tiny_model_dir.iterdir():
        if not path.name.endswith(".safetensors") and path.name != "model.safetensors.index.json":
            shutil.copy(path, out / path.name)
    tensors = load_file(str(tiny_model_dir / "model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    shards: list[dict[str, torch.Tensor]] = [dict(tensors)]
    for i in range(4):
        filler = torch.randn(3 * 2**20, generator=generator).to(torch.bfloat16)  # 6 MiB
        shards.append({f"model.layers.0.filler_{i}.weight": filler})
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for s in shards for t in s.values())}
    }
    (out / "model.safetensors.index.json").write_text(json.dumps({**index, "weight_map": weight_map}))
    return out


class Gate:
    """Holds the local Bedrock's import jobs InProgress until released (patches the server in-process)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    import bedrock_ft.local._control as control

    held = Gate()
    run_import = control.run_import

    def gated(*args: Any, **kwargs: Any) -> Any:
        held.entered.set()
        held.open.wait(60)
        return run_import(*args, **kwargs)

    monkeypatch.setattr(control, "run_import", gated)
    yield held
    held.open.set()
