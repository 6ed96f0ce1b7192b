"""BedrockImporter against the local Bedrock and local S3, over real HTTP with real boto3 clients."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bedrock_ft import BedrockImporter, ImportConfig, ImportedModel, ResourceNotFoundError
from bedrock_ft.artifacts import FileEntry, ModelArtifact
from bedrock_ft.local import LocalStack

from .conftest import BUCKET, RequestLog, job_names, keys

MakeConfig = Callable[..., ImportConfig]
RunCli = Callable[..., tuple[int, str, str]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_import_of_the_embedded_model(
    stack: LocalStack, import_config: MakeConfig, embedded_dir: Path, request_log: RequestLog
) -> None:
    steps: list[str] = []
    sent: dict[str, int] = {}

    def on_upload(name: str, n: int) -> None:
        sent[name] = sent.get(name, 0) + n

    config = import_config(
        model_name="smollm2_ft", s3_uri=f"s3://{BUCKET}/smollm2", concurrency=4, checksum_algorithm="SHA256"
    )
    imported = BedrockImporter(config, progress=steps.append, on_upload=on_upload).import_model(embedded_dir)

    # What Bedrock reports about the model.
    assert imported.status == "Completed"
    assert imported.model_arn and imported.model_arn.startswith(
        "arn:aws:bedrock:us-east-1:123456789012:imported-model/"
    )
    assert imported.model_name == "smollm2_ft"
    assert imported.job_name and imported.job_name.startswith("smollm2-ft-")  # '_' is not allowed there
    assert imported.architecture == "llama" and imported.instruct_supported is True
    assert imported.cmus_per_copy == 1
    assert imported.api_formats == (
        "BedrockCompletion", "OpenAICompletion", "OpenAIChatCompletion", "Converse",
    )  # fmt: skip
    assert imported.s3_uri == f"s3://{BUCKET}/smollm2/"
    assert imported.endpoint_url == stack.bedrock_url and imported.region == "us-east-1"
    # No manifest here: the chat template comes from the model's own tokenizer_config.json.
    tokenizer_config = json.loads((embedded_dir / "tokenizer_config.json").read_text())
    assert (
        imported.chat_template == tokenizer_config["chat_template"]
        and "<|im_start|>" in imported.chat_template
    )
    # Every file went up once, with its sha256 in the metadata, and S3 verified a checksum.
    files = sorted(p for p in embedded_dir.iterdir() if p.is_file())
    assert sorted(imported.upload.sent) == [p.name for p in files]
    assert imported.upload.bytes_sent == sum(p.stat().st_size for p in files)
    assert sent == {p.name: p.stat().st_size for p in files}
    assert keys(stack, "smollm2/") == [f"smollm2/{p.name}" for p in files]
    s3 = stack.aws_config().client("s3")
    for path in files:
        head = s3.head_object(Bucket=BUCKET, Key=f"smollm2/{path.name}", ChecksumMode="ENABLED")
        assert head["Metadata"]["sha256"] == sha256(path)
        assert head["ContentLength"] == path.stat().st_size
        assert "ChecksumSHA256" in head  # the configured algorithm, not boto3's default CRC32
    assert any(step.startswith("preflight: ") for step in steps)
    # The model serves: one real invocation through the runtime API.
    runtime = stack.aws_config().client("bedrock-runtime")
    body = {
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 12,
        "temperature": 0,
    }
    deadline = time.monotonic() + 120
    while True:
        try:
            out = json.loads(
                runtime.invoke_model(modelId=imported.model_arn, body=json.dumps(body))["body"].read()
            )
            break
        except runtime.exceptions.ModelNotReadyException:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert "Paris" in out["choices"][0]["message"]["content"]
    # The requests the importer sent were all checked against the service model.
    assert {"bedrock.CreateModelImportJob", "bedrock.GetModelImportJob", "bedrock.GetImportedModel"} <= set(
        request_log.operations
    )

    # Running it again changes nothing: the finished import is found, nothing is sent, no new job.
    again = BedrockImporter(config, progress=steps.append).import_model(embedded_dir)
    assert again.model_arn == imported.model_arn and again.upload is None
    assert job_names(stack) == [imported.job_name]


def test_merge_artifact_is_checked_against_its_manifest(
    stack: LocalStack, import_config: MakeConfig, tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    model_dir = tmp_path / "merge" / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    entries = tuple(
        FileEntry(path=p.name, size=p.stat().st_size, sha256=sha256(p)) for p in sorted(model_dir.iterdir())
    )
    artifact = ModelArtifact(
        model_dir=str(model_dir), architecture="llama", dtype="bfloat16", parameter_count=1,
        total_bytes=sum(e.size for e in entries), files=entries, chat_template="{{ messages }}",
    )  # fmt: skip
    artifact.write(tmp_path / "merge")
    # The merge's output dir, its manifest and its model/ dir all name the same artifact.
    for source in (tmp_path / "merge", tmp_path / "merge" / "manifest.json", model_dir):
        from bedrock_ft.importing._importer import resolve_model

        found, directory = resolve_model(source)
        assert found is not None and directory == model_dir
    imported = BedrockImporter(import_config()).import_model(tmp_path / "merge")
    assert imported.chat_template == "{{ messages }}"  # the trained template travels with the model
    # A file changed after the merge is refused before anything is sent.
    with (model_dir / "config.json").open("a") as fh:
        fh.write("\n")
    from bedrock_ft import ArtifactError

    with pytest.raises(ArtifactError, match=r"config\.json: .*(changed since the merge)"):
        BedrockImporter(import_config(s3_uri=f"s3://{BUCKET}/other/")).import_model(tmp_path / "merge")
    assert keys(stack, "other/") == []


def test_no_wait_then_wait(stack: LocalStack, import_config: MakeConfig, tiny_model_dir: Path) -> None:
    importer = BedrockImporter(import_config(wait=False))
    started = importer.import_model(tiny_model_dir)
    assert started.status == "InProgress" and started.model_arn is None and started.job_arn
    done = importer.wait(started.job_arn)
    assert done.status == "Completed" and done.model_arn and done.job_arn == started.job_arn


def test_lifecycle(stack: LocalStack, import_config: MakeConfig, tiny_model_dir: Path) -> None:
    first = BedrockImporter(import_config(model_name="first")).import_model(tiny_model_dir)
    second = BedrockImporter(
        import_config(model_name="second", s3_uri=f"s3://{BUCKET}/second/")
    ).import_model(tiny_model_dir)
    shared = BedrockImporter(import_config(model_name="shared")).import_model(tiny_model_dir)  # first's files
    importer = BedrockImporter(aws=stack.aws_config())

    listed = importer.list_imported_models()
    assert [m.model_name for m in listed] == ["shared", "second", "first"]  # newest first
    assert [m.model_name for m in importer.list_imported_models("sec")] == ["second"]
    assert importer.get("first").model_arn == first.model_arn
    assert importer.get(str(second.model_arn)).model_name == "second"
    assert importer.find_by_name("nobody") is None
    with pytest.raises(ResourceNotFoundError):
        importer.get("nobody")

    # first's files are shared's too: deleting first keeps them.
    assert importer.delete("first", delete_artifacts=True) == []
    assert keys(stack, "tiny/") != []
    # second's files are its own: they go with it.
    deleted = importer.delete(str(second.model_arn), delete_artifacts=True)
    assert deleted == [f"s3://{BUCKET}/{key}" for key in keys_before(tiny_model_dir, "second/")]
    assert keys(stack, "second/") == []
    assert [m.model_name for m in importer.list_imported_models()] == ["shared"]
    assert importer.get("shared").model_arn == shared.model_arn


def keys_before(model_dir: Path, prefix: str) -> list[str]:
    return sorted(prefix + p.name for p in model_dir.iterdir() if p.is_file())


def test_cost_estimate(stack: LocalStack, import_config: MakeConfig, tiny_model_dir: Path) -> None:
    imported = BedrockImporter(import_config()).import_model(tiny_model_dir)
    importer = BedrockImporter(aws=stack.aws_config())
    # 1 CMU x 2 copies x 0.0785 $/CMU-minute x 5 minutes x 3 windows (11 minutes start a third window)
    estimate = importer.estimate_cost("tiny", price_per_cmu_minute=0.0785, active_minutes=11, copies=2)
    assert estimate.windows == 3 and estimate.cost == pytest.approx(1 * 2 * 0.0785 * 5 * 3)
    assert importer.estimate_cost(imported, price_per_cmu_minute=0.0785, active_minutes=0).cost == 0


def test_cli_import_list_delete(
    stack: LocalStack, tiny_model_dir: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    code, out, err = run_cli(
        "import", str(tiny_model_dir), "--model-name", "cli-model", "--s3-uri", f"s3://{BUCKET}/cli",
        "--role-arn", "arn:aws:iam::123456789012:role/BedrockImport", "--json",
    )  # fmt: skip
    assert code == 0, err
    imported = ImportedModel.model_validate(json.loads(out))
    assert imported.status == "Completed" and imported.model_name == "cli-model"

    code, out, err = run_cli("models", "list")
    assert code == 0, err
    assert out.split("\t")[0] == "cli-model" and str(imported.model_arn) in out

    code, out, err = run_cli("models", "delete", "cli-model", "--delete-artifacts")
    assert code == 0, err
    assert f"deleted cli-model ({imported.model_arn})" in out
    assert keys(stack, "cli/") == []
    code, out, err = run_cli("models", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, _, err = run_cli("models", "delete", "cli-model")
    assert code == 1 and "ResourceNotFoundException" in err


def test_reimport_after_the_model_was_deleted(
    stack: LocalStack, import_config: MakeConfig, tiny_model_dir: Path
) -> None:
    first = BedrockImporter(import_config()).import_model(tiny_model_dir)
    BedrockImporter(aws=stack.aws_config()).delete("tiny")  # the files stay in S3
    steps: list[str] = []
    second = BedrockImporter(import_config(), progress=steps.append).import_model(tiny_model_dir)
    assert second.model_arn != first.model_arn and second.status == "Completed"
    assert second.job_name == f"{first.job_name}-r2"
    assert second.upload.sent == [] and len(second.upload.skipped) == len(list(tiny_model_dir.iterdir()))
    assert any("made a model that no longer exists" in step for step in steps), steps


def test_settings_reach_the_request(
    stack: LocalStack, import_config: MakeConfig, tiny_model_dir: Path, request_log: RequestLog
) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    config = import_config(
        job_tags={"team": "ml"}, model_tags={"stage": "dev"}, kms_key_id=key,
        vpc={"subnet_ids": ["subnet-1"], "security_group_ids": ["sg-1"]},
    )  # fmt: skip
    imported = BedrockImporter(config).import_model(tiny_model_dir)
    [request] = [params for op, params in request_log.params if op == "bedrock.CreateModelImportJob"]
    assert request["jobTags"] == [{"key": "team", "value": "ml"}]
    assert request["importedModelTags"] == [{"key": "stage", "value": "dev"}]
    assert request["importedModelKmsKeyId"] == key
    assert request["vpcConfig"] == {"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"]}
    assert request["modelDataSource"] == {"s3DataSource": {"s3Uri": f"s3://{BUCKET}/tiny/"}}
    assert len(request["clientRequestToken"]) == 64
    job = stack.aws_config().client("bedrock").get_model_import_job(jobIdentifier=imported.job_arn)
    assert job["vpcConfig"]["subnetIds"] == ["subnet-1"] and job["importedModelKmsKeyArn"] == key


def test_sse_kms_encrypts_and_resends_files_stored_without_it(
    stack: LocalStack, import_config: MakeConfig, tiny_model_dir: Path
) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    s3 = stack.aws_config().client("s3")
    # An earlier upload of the same files, without encryption (same content, same sha256 metadata).
    for path in sorted(tiny_model_dir.iterdir()):
        s3.put_object(
            Bucket=BUCKET, Key=f"tiny/{path.name}", Body=path.read_bytes(), Metadata={"sha256": sha256(path)}
        )
    plain = BedrockImporter(import_config(wait=False, model_name="plain")).import_model(tiny_model_dir)
    assert plain.upload.sent == []  # unencrypted is fine when no key is asked for
    BedrockImporter(aws=stack.aws_config()).wait(str(plain.job_arn))
    imported = BedrockImporter(import_config(sse_kms_key_id=key)).import_model(tiny_model_dir)
    assert sorted(imported.upload.sent) == sorted(p.name for p in tiny_model_dir.iterdir())
    for path in tiny_model_dir.iterdir():
        head = s3.head_object(Bucket=BUCKET, Key=f"tiny/{path.name}")
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key
