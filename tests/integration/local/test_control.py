"""Custom Model Import on the local Bedrock: jobs, quotas, preflight failures, persistence."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_ft.local import LocalStack
from integration.scripted import ScriptedEngine

from .conftest import ROLE, client, import_model, invoke_until_ready, upload_dir, wait_for_job

StackFactory = Callable[..., LocalStack]


def _create(stack: LocalStack, **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "jobName": "job-1",
        "importedModelName": "model-1",
        "roleArn": ROLE,
        "modelDataSource": {"s3DataSource": {"s3Uri": "s3://models/tiny/"}},
    }
    request.update(overrides)
    return dict(client(stack, "bedrock").create_model_import_job(**request))


def _error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


def test_job_lifecycle_and_listing(new_stack: StackFactory, tiny_model_dir: Path) -> None:
    stack = new_stack()
    uri = upload_dir(stack, tiny_model_dir, "tiny")
    bedrock = client(stack, "bedrock")
    job_arn = _create(stack, modelDataSource={"s3DataSource": {"s3Uri": uri}})["jobArn"]
    assert job_arn.startswith("arn:aws:bedrock:us-east-1:123456789012:model-import-job/")
    first = bedrock.get_model_import_job(jobIdentifier=job_arn)
    assert first["status"] in ("InProgress", "Completed")
    job = wait_for_job(stack, job_arn)
    assert job["status"] == "Completed", job.get("failureMessage")
    assert job["endTime"] >= job["creationTime"]
    model = bedrock.get_imported_model(modelIdentifier=job["importedModelArn"])
    assert model["modelName"] == "model-1" and model["jobArn"] == job_arn
    assert model["modelArchitecture"] == "llama"
    assert model["instructSupported"] is True
    assert model["customModelUnits"]["customModelUnitsPerModelCopy"] >= 1
    assert bedrock.get_imported_model(modelIdentifier="model-1")["modelArn"] == model["modelArn"]
    summaries = bedrock.list_imported_models()["modelSummaries"]
    assert [s["modelName"] for s in summaries] == ["model-1"]
    jobs = bedrock.list_model_import_jobs(statusEquals="Completed")["modelImportJobSummaries"]
    assert [j["jobName"] for j in jobs] == ["job-1"]
    assert bedrock.list_model_import_jobs(statusEquals="Failed")["modelImportJobSummaries"] == []
    assert bedrock.list_model_import_jobs(nameContains="nope")["modelImportJobSummaries"] == []
    bedrock.delete_imported_model(modelIdentifier=model["modelArn"])
    assert bedrock.list_imported_models()["modelSummaries"] == []
    with pytest.raises(bedrock.exceptions.ResourceNotFoundException):
        bedrock.get_imported_model(modelIdentifier=model["modelArn"])
    assert not stack.service.store.weights_dir(model["modelArn"].rsplit("/", 1)[1]).exists()


def test_pagination_and_idempotency(new_stack: StackFactory, tiny_model_dir: Path) -> None:
    stack = new_stack(max_imported_models=10)
    uri = upload_dir(stack, tiny_model_dir, "tiny")
    bedrock = client(stack, "bedrock")
    for index in range(3):
        source = {"s3DataSource": {"s3Uri": uri}}
        request = {"jobName": f"job-{index}", "importedModelName": f"m-{index}", "modelDataSource": source}
        arn = _create(stack, clientRequestToken=f"token-{index}", **request)["jobArn"]
        again = _create(stack, clientRequestToken=f"token-{index}", **request)["jobArn"]
        assert again == arn  # the same token and request: the same job, not a second one
        assert wait_for_job(stack, arn)["status"] == "Completed"
    with pytest.raises(ClientError) as caught:
        _create(stack, clientRequestToken="token-0", jobName="job-other", importedModelName="m-other")
    assert _error(caught)[0] == "ConflictException"
    paginator = bedrock.get_paginator("list_imported_models")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 2}, sortOrder="Ascending"))
    assert [len(page["modelSummaries"]) for page in pages] == [2, 1]
    names = [s["modelName"] for page in pages for s in page["modelSummaries"]]
    assert names == ["m-0", "m-1", "m-2"]
    with pytest.raises(ClientError) as caught:
        bedrock.list_imported_models(nextToken="not-a-token")
    assert _error(caught)[0] == "ValidationException"


@pytest.mark.parametrize(
    ("overrides", "member"),
    [
        ({"jobName": "bad name!"}, "jobName"),
        ({"jobName": "x" * 64}, "jobName"),
        ({"importedModelName": "-starts-with-dash"}, "importedModelName"),
        ({"roleArn": "arn:aws:iam::12345:user/not-a-role"}, "roleArn"),
        ({"modelDataSource": {"s3DataSource": {"s3Uri": "https://models/tiny/"}}}, "s3Uri"),
    ],
)
def test_requests_that_break_the_shape_are_refused(
    new_stack: StackFactory, overrides: dict[str, Any], member: str
) -> None:
    stack = new_stack()
    with pytest.raises(ClientError) as caught:
        _create(stack, **overrides)
    code, message = _error(caught)
    assert code == "ValidationException"
    assert member in message
    assert client(stack, "bedrock").list_model_import_jobs()["modelImportJobSummaries"] == []


def test_missing_sources_are_accepted_and_fail_the_job(
    new_stack: StackFactory, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # As AWS's samples describe: CreateModelImportJob accepts the request, and the job ends Failed with a
    # failureMessage saying what was wrong with the source.
    stack = new_stack()
    upload_dir(stack, tiny_model_dir, "tiny")
    (tmp_path / "noconfig").mkdir()
    (tmp_path / "noconfig" / "tokenizer.json").write_text("{}")
    cases = {
        "s3://no-such-bucket/tiny/": "The S3 bucket no-such-bucket does not exist.",
        "s3://models/missing/": "No model files were found at s3://models/missing/",
        upload_dir(stack, tmp_path / "noconfig", "noconfig"): "has no config.json at its top level",
    }
    for i, (uri, needle) in enumerate(cases.items()):
        created = _create(stack, jobName=f"missing-{i}", importedModelName=f"missing-{i}",
                          modelDataSource={"s3DataSource": {"s3Uri": uri}})  # fmt: skip
        job = wait_for_job(stack, created["jobArn"])
        assert job["status"] == "Failed", uri
        assert needle in job["failureMessage"]
    assert client(stack, "bedrock").list_imported_models()["modelSummaries"] == []


@pytest.mark.parametrize(
    ("change", "rule_text"),
    [
        ({"config": {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}}, "gpt2"),
        ({"add": {"pytorch_model.bin": b"\x00" * 16}}, "pytorch_model.bin"),
        ({"config": {"max_position_embeddings": 262144}}, "262144"),
    ],
    ids=["unsupported-architecture", "bin-weights", "context-over-128k"],
)
def test_preflight_failures_fail_the_job(
    new_stack: StackFactory, make_model: Callable[..., Path], change: dict[str, Any], rule_text: str
) -> None:
    stack = new_stack()
    uri = upload_dir(stack, make_model(**change), "bad")
    job = wait_for_job(stack, _create(stack, modelDataSource={"s3DataSource": {"s3Uri": uri}})["jobArn"])
    assert job["status"] == "Failed"
    assert rule_text in job["failureMessage"]
    assert job["failureMessage"].startswith("[error] ")  # every message names its rule
    assert client(stack, "bedrock").list_imported_models()["modelSummaries"] == []
    assert list((stack.data_dir / "staging").iterdir()) == []  # nothing half-imported is left


def test_quotas(new_stack: StackFactory, tiny_model_dir: Path) -> None:
    stack = new_stack()
    uri = upload_dir(stack, tiny_model_dir, "tiny")
    source = {"s3DataSource": {"s3Uri": uri}}
    bedrock = client(stack, "bedrock")
    first = _create(stack, jobName="j0", importedModelName="m0", modelDataSource=source)["jobArn"]
    if bedrock.get_model_import_job(jobIdentifier=first)["status"] == "InProgress":
        with pytest.raises(ClientError) as caught:
            _create(stack, jobName="j-second", importedModelName="m-second", modelDataSource=source)
        assert _error(caught)[0] == "ServiceQuotaExceededException"
        assert "concurrent" in _error(caught)[1]
    wait_for_job(stack, first)
    with pytest.raises(ClientError) as caught:
        _create(stack, jobName="j-dup", importedModelName="m0", modelDataSource=source)
    assert _error(caught)[0] == "ConflictException"
    for index in (1, 2):
        arn = _create(stack, jobName=f"j{index}", importedModelName=f"m{index}", modelDataSource=source)[
            "jobArn"
        ]
        assert wait_for_job(stack, arn)["status"] == "Completed"
    with pytest.raises(ClientError) as caught:
        _create(stack, jobName="j3", importedModelName="m3", modelDataSource=source)
    assert _error(caught)[0] == "ServiceQuotaExceededException"
    assert "3 imported models" in _error(caught)[1]


def test_concurrent_job_quota_is_enforced(new_stack: StackFactory, tiny_model_dir: Path) -> None:
    """A job held InProgress (its S3 copy blocked) makes a second job exceed the quota."""
    import threading

    stack = new_stack()
    uri = upload_dir(stack, tiny_model_dir, "tiny")
    gate = threading.Event()
    service = stack.service
    original = service.control._s3

    calls = {"n": 0}

    def gated() -> Any:
        calls["n"] += 1
        if calls["n"] > 1:  # the first call checks the source; the job's own copy waits
            gate.wait(30)
        return original()

    service.control._s3 = gated
    try:
        _create(stack, modelDataSource={"s3DataSource": {"s3Uri": uri}})
        with pytest.raises(ClientError) as caught:
            _create(
                stack,
                jobName="job-2",
                importedModelName="model-2",
                modelDataSource={"s3DataSource": {"s3Uri": uri}},
            )
        assert _error(caught)[0] == "ServiceQuotaExceededException"
    finally:
        gate.set()


def test_state_survives_a_restart(new_stack: StackFactory, tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "persist"
    stack = new_stack(data_dir=data, cold_start=False)
    job = import_model(stack, upload_dir(stack, tiny_model_dir, "tiny"), "keeper")
    assert job["status"] == "Completed"
    stack.stop()
    again = new_stack(data_dir=data, cold_start=False)
    bedrock = client(again, "bedrock")
    assert [s["modelName"] for s in bedrock.list_imported_models()["modelSummaries"]] == ["keeper"]
    assert bedrock.get_model_import_job(jobIdentifier=job["jobArn"])["status"] == "Completed"
    runtime = client(again, "bedrock-runtime")
    out = json.loads(
        runtime.invoke_model(
            modelId=job["importedModelArn"], body=json.dumps({"prompt": "hi", "max_gen_len": 4})
        )["body"].read()
    )
    assert out["generation_token_count"] >= 1


def test_scale_to_zero(new_stack: StackFactory, tiny_model_dir: Path) -> None:
    engine = ScriptedEngine(load_seconds=0.2)
    stack = new_stack(idle_unload_seconds=0.3, engine=engine)
    arn = import_model(stack, upload_dir(stack, tiny_model_dir, "tiny"), "sleepy")["importedModelArn"]
    runtime = client(stack, "bedrock-runtime")
    body = {"prompt": "hi", "max_gen_len": 2}
    invoke_until_ready(runtime, arn, body)
    model_id = arn.rsplit("/", 1)[1]
    deadline = time.monotonic() + 10
    while stack.service.pool.is_loaded(model_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stack.service.pool.is_loaded(model_id)  # unloaded after 0.3 s idle
    assert (engine.loads, engine.closed) == (1, 1)  # and its memory released
    with pytest.raises(runtime.exceptions.ModelNotReadyException):
        runtime.invoke_model(modelId=arn, body=json.dumps(body))
    assert invoke_until_ready(runtime, arn, body)["generation_token_count"] >= 1
    assert engine.loads == 2  # the cold start loaded it again


def test_throttling(new_stack: StackFactory, tiny_model_dir: Path) -> None:
    engine = ScriptedEngine()
    stack = new_stack(throttle_rps=2, cold_start=False, engine=engine)
    arn = import_model(stack, upload_dir(stack, tiny_model_dir, "tiny"), "busy")["importedModelArn"]
    runtime = client(stack, "bedrock-runtime")
    body = json.dumps({"prompt": "hi", "max_gen_len": 1})
    codes = []
    for _ in range(6):
        try:
            runtime.invoke_model(modelId=arn, body=body)
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert codes[0] == "ok"
    assert "ThrottlingException" in codes
    time.sleep(1.0)  # the bucket refills at 2 per second
    runtime.invoke_model(modelId=arn, body=body)
    # botocore's standard retry mode retries ThrottlingException on its own.
    patient = client(stack, "bedrock-runtime", attempts=10)
    for _ in range(4):
        patient.invoke_model(modelId=arn, body=body)
    assert len(engine.prompts) == codes.count("ok") + 5  # a throttled request never reaches the model


def test_legacy_import_answers_in_the_mistral_native_body(
    new_stack: StackFactory, make_model: Callable[..., Path]
) -> None:
    mistral = make_model(
        {"model_type": "mistral", "architectures": ["MistralForCausalLM"], "sliding_window": None}
    )
    stack = new_stack(legacy_invoke_format=True, cold_start=False)
    job = import_model(stack, upload_dir(stack, mistral, "mistral"), "legacy-mistral")
    assert job["status"] == "Completed", job.get("failureMessage")
    runtime = client(stack, "bedrock-runtime")
    body = {"prompt": "[INST] hi [/INST]", "max_tokens": 3, "temperature": 0}
    out = json.loads(
        runtime.invoke_model(modelId=job["importedModelArn"], body=json.dumps(body))["body"].read()
    )
    assert out["outputs"][0]["stop_reason"] in ("stop", "length")
    assert isinstance(out["outputs"][0]["text"], str)
    with pytest.raises(ClientError) as caught:
        runtime.invoke_model(
            modelId=job["importedModelArn"], body=json.dumps({"messages": [{"role": "user", "content": "x"}]})
        )
    assert "native format" in _error(caught)[1]


def test_chat_needs_a_template_and_a_template_may_refuse(
    new_stack: StackFactory, make_model: Callable[..., Path]
) -> None:
    no_template = make_model()
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))
    strict = make_model()
    config = json.loads((strict / "tokenizer_config.json").read_text())
    config["chat_template"] = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}{{ m['content'] }}{% endfor %}"
    )
    (strict / "tokenizer_config.json").write_text(json.dumps(config))
    # A template only in a separate chat_template.jinja is not read, as no AWS source says Bedrock does.
    (no_template / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    stack = new_stack(cold_start=False, max_imported_models=5)
    plain = import_model(stack, upload_dir(stack, no_template, "plain"), "plain")
    fussy = import_model(stack, upload_dir(stack, strict, "fussy"), "fussy")
    bedrock, runtime = client(stack, "bedrock"), client(stack, "bedrock-runtime")
    assert bedrock.get_imported_model(modelIdentifier="plain")["instructSupported"] is False
    chat = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}
    for arn, needle in (
        (plain["importedModelArn"], "no chat template"),
        (fussy["importedModelArn"], "System role"),
    ):
        with pytest.raises(ClientError) as caught:
            runtime.invoke_model(modelId=arn, body=json.dumps({**chat, "max_tokens": 2}))
        assert _error(caught)[0] == "ValidationException" and needle in _error(caught)[1]
        with pytest.raises(ClientError) as caught:  # the stream fails the same way, before any event
            runtime.invoke_model_with_response_stream(modelId=arn, body=json.dumps({**chat, "max_tokens": 2}))
        assert _error(caught)[0] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        runtime.converse(
            modelId=fussy["importedModelArn"],
            system=[{"text": "Be brief."}],
            messages=[{"role": "user", "content": [{"text": "hi"}]}],
        )
    assert "System role" in _error(caught)[1]


def test_over_long_requests_and_bad_extra_fields_are_client_errors(
    new_stack: StackFactory, tiny_model_dir: Path
) -> None:
    stack = new_stack(cold_start=False)
    arn = import_model(stack, upload_dir(stack, tiny_model_dir, "tiny"), "tiny")["importedModelArn"]
    runtime = client(stack, "bedrock-runtime")
    with pytest.raises(ClientError) as caught:  # the tiny model's context is 2048 tokens
        runtime.invoke_model(modelId=arn, body=json.dumps({"prompt": "hi", "max_tokens": 4000}))
    assert _error(caught)[0] == "ValidationException"
    assert "maximum context length is 2048" in _error(caught)[1]
    for extra in ({"seed": "x"}, {"seed": 2**70}, {"top_k": "abc"}, {"frobnicate": 1}):
        with pytest.raises(ClientError) as caught:
            runtime.converse(
                modelId=arn,
                messages=[{"role": "user", "content": [{"text": "hi"}]}],
                additionalModelRequestFields=extra,
            )
        assert _error(caught)[0] == "ValidationException", extra
    body = json.dumps({"prompt": "hi", "max_gen_len": 2})  # and the model still serves
    assert (
        json.loads(runtime.invoke_model(modelId=arn, body=body)["body"].read())["generation_token_count"] >= 1
    )


def test_one_server_per_data_dir(new_stack: StackFactory, tmp_path: Path) -> None:
    from bedrock_ft.local._store import StoreLockedError

    new_stack(data_dir=tmp_path / "shared")
    with pytest.raises(StoreLockedError, match="in use by another local Bedrock"):
        new_stack(data_dir=tmp_path / "shared")


def test_a_failed_start_releases_the_data_dir(tmp_path: Path) -> None:
    import socket

    from bedrock_ft.local import LocalBedrockConfig, LocalStack

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = LocalBedrockConfig(data_dir=tmp_path / "data", port=busy.getsockname()[1])
        with pytest.raises(RuntimeError, match="did not start"):
            LocalStack(config, export_env=False).start()
    with LocalStack(config.replace(port=0), export_env=False) as stack:  # the same data dir, at once
        assert stack.bedrock_url
