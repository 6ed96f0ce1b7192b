"""A model already in S3 (a training job's merged output) is imported from where it is: checked from
its small files and .safetensors headers, nothing downloaded whole or uploaded, over real HTTP."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import (
    ArtifactError,
    BedrockImporter,
    ConfigError,
    ConflictError,
    ImportConfig,
    ImportedModel,
    PreflightError,
    ResourceNotFoundError,
)
from bedrock_ft.artifacts import FileEntry, ModelArtifact
from bedrock_ft.local import LocalStack

from .conftest import BUCKET, RequestLog, job_names, keys

MakeConfig = Callable[..., ImportConfig]
PREFIX = "jobs/job-1/output/model/merged/"
URI = f"s3://{BUCKET}/{PREFIX}"
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
WRITES = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "DeleteObjects"}


@pytest.fixture(scope="session")
def merged_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a training job writes its merged export: two shards, the index, and a
    bedrock-ft manifest.json beside them (model_dir '.', every file's size and sha256)."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("merged")
    for path in tiny_model_dir.iterdir():
        if not path.name.endswith(".safetensors"):
            shutil.copy(path, out / path.name)
    tensors = load_file(str(tiny_model_dir / "model.safetensors"))
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:1], "model-00002-of-00002.safetensors": names[1:]}
    for shard, members in shards.items():
        save_file({n: tensors[n] for n in members}, str(out / shard), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {n: s for s, members in shards.items() for n in members}}
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    entries = tuple(
        FileEntry(path=p.name, size=p.stat().st_size, sha256=hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(out.iterdir())
    )
    ModelArtifact(
        model_dir=str(out), architecture="llama", dtype="bfloat16", parameter_count=1,
        total_bytes=sum(e.size for e in entries), files=entries, chat_template=TEMPLATE,
    ).write(out)  # fmt: skip
    assert json.loads((out / "manifest.json").read_text())["model_dir"] == "."
    return out


def put_model(
    stack: LocalStack, directory: Path, prefix: str = PREFIX, *, skip: tuple[str, ...] = ()
) -> None:
    s3 = stack.aws_config().client("s3")
    for path in sorted(directory.iterdir()):
        if path.name not in skip:
            s3.upload_file(str(path), BUCKET, prefix + path.name)


def objects(stack: LocalStack) -> dict[str, tuple[str, Any]]:
    """Every object of the bucket: key -> (ETag, LastModified)."""
    listed = stack.aws_config().client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {obj["Key"]: (obj["ETag"], obj["LastModified"]) for obj in listed}


@pytest.fixture
def s3_calls(stack: LocalStack, request_log: RequestLog, monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """Every S3 request bedrock_ft's clients make from here on: (operation, params)."""
    import bedrock_ft.aws as aws_module

    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.service_model.service_name == "s3":
            calls.append((model.name, dict(params)))

    original = aws_module._new_session

    def new_session(config: Any) -> Any:
        session = original(config)
        session.events.register("before-parameter-build", record)
        return session

    monkeypatch.setattr(aws_module, "_new_session", new_session)
    aws_module.clear_client_cache()
    yield calls


def invoke(stack: LocalStack, model_arn: str) -> dict[str, Any]:
    runtime = stack.aws_config().client("bedrock-runtime")
    deadline = time.monotonic() + 120
    while True:
        try:
            body = json.dumps({"prompt": "Hello", "max_tokens": 3, "temperature": 0})
            return dict(json.loads(runtime.invoke_model(modelId=model_arn, body=body)["body"].read()))
        except runtime.exceptions.ModelNotReadyException:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_import_from_a_prefix_reads_headers_only_and_uploads_nothing(
    stack: LocalStack, import_config: MakeConfig, merged_dir: Path, s3_calls: list
) -> None:
    put_model(stack, merged_dir)
    before = objects(stack)
    s3_calls.clear()  # the test's own uploads
    steps: list[str] = []
    imported = BedrockImporter(import_config(s3_uri=None), progress=steps.append).import_model(URI)

    assert imported.status == "Completed" and imported.model_arn
    assert imported.upload is None and imported.s3_uri == URI
    assert imported.architecture == "llama" and imported.chat_template == TEMPLATE  # the manifest's
    assert objects(stack) == before  # nothing written, replaced or deleted
    operations = {name for name, _ in s3_calls}
    assert operations <= {"ListObjectsV2", "GetObject"} and not operations & WRITES, operations
    # Each shard was read by its header only: two ranged GETs, the second ending at the header's end.
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        gets = [p for name, p in s3_calls if name == "GetObject" and p["Key"] == PREFIX + shard]
        (length,) = struct.unpack("<Q", (merged_dir / shard).read_bytes()[:8])
        assert [g.get("Range") for g in gets] == ["bytes=0-7", f"bytes=8-{8 + length - 1}"]
    assert any("identity: the sha256 of each file" in s for s in steps), steps
    assert "choices" in invoke(stack, imported.model_arn)  # the local Bedrock serves it

    # A re-run finds the finished import: the same model, no new job, still nothing written. An s3_uri
    # that names somewhere else changes nothing either: the model is imported from where it is.
    s3_calls.clear()
    steps.clear()
    config = import_config(s3_uri=f"s3://{BUCKET}/elsewhere/")
    again = BedrockImporter(config, progress=steps.append).import_model(URI.rstrip("/"))
    assert again.model_arn == imported.model_arn and again.upload is None
    assert job_names(stack) == [imported.job_name]
    assert any(f"s3_uri (s3://{BUCKET}/elsewhere/) is not used" in s for s in steps), steps
    assert not {name for name, _ in s3_calls} & WRITES and objects(stack) == before


def test_without_a_manifest_the_identity_is_the_objects_etags(
    stack: LocalStack, import_config: MakeConfig, merged_dir: Path
) -> None:
    put_model(stack, merged_dir, skip=("manifest.json",))
    steps: list[str] = []
    imported = BedrockImporter(import_config(), progress=steps.append).import_model(URI)
    assert imported.status == "Completed" and imported.upload is None
    assert any("the ETag and size of each object" in s for s in steps), steps
    again = BedrockImporter(import_config()).import_model(URI)
    assert again.model_arn == imported.model_arn and job_names(stack) == [imported.job_name]
    # Other bytes in one object make another import (refused here: the model name is taken).
    s3 = stack.aws_config().client("s3")
    config = json.loads((merged_dir / "config.json").read_text())
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "config.json", Body=json.dumps({**config, "x": 1}).encode())
    with pytest.raises(ConflictError, match="already exists"):
        BedrockImporter(import_config()).import_model(URI)
    assert job_names(stack) == [imported.job_name]


def test_a_merge_output_dir_and_an_artifact_pointing_into_s3(
    stack: LocalStack, import_config: MakeConfig, merged_dir: Path, tmp_path: Path
) -> None:
    # The merge's own layout (manifest.json beside model/): the manifest's model_dir says where.
    put_model(stack, merged_dir, prefix="merge/model/", skip=("manifest.json",))
    manifest = json.loads((merged_dir / "manifest.json").read_text())
    s3 = stack.aws_config().client("s3")
    s3.put_object(
        Bucket=BUCKET, Key="merge/manifest.json", Body=json.dumps({**manifest, "model_dir": "model"})
    )
    imported = BedrockImporter(import_config()).import_model(f"s3://{BUCKET}/merge/")
    assert imported.s3_uri == f"s3://{BUCKET}/merge/model/" and imported.chat_template == TEMPLATE
    # A ModelArtifact whose model_dir is an s3:// URI, read from a local manifest: the same import.
    artifact = ModelArtifact.model_validate({**manifest, "model_dir": f"s3://{BUCKET}/merge/model/"})
    again = BedrockImporter(import_config()).import_model(artifact.write(tmp_path))
    assert again.model_arn == imported.model_arn and len(job_names(stack)) == 1


def test_the_shadow_dir_holds_each_header_in_a_file_of_the_objects_size(
    stack: LocalStack, merged_dir: Path
) -> None:
    from bedrock_ft.importing._s3_model import open_s3_model, shadow_dir

    put_model(stack, merged_dir)
    s3 = stack.aws_config().client("s3")
    model = open_s3_model(s3, URI, None, say=lambda _: None)
    assert model.from_manifest and [o.name for o in model.objects] == sorted(
        p.name for p in merged_dir.iterdir()
    )
    with shadow_dir(s3, model) as shadow:
        for path in merged_dir.iterdir():
            copy, data = (shadow / path.name).read_bytes(), path.read_bytes()
            assert len(copy) == len(data), path.name  # the size rule sees the true size
            if path.name.endswith(".safetensors"):
                end = 8 + struct.unpack("<Q", data[:8])[0]
                assert copy[:end] == data[:end] and not copy[end:].strip(b"\0")  # the header, then a hole
            else:
                assert copy == data
    assert not shadow.exists()


def _corrupt_length(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", len(data) * 2) + data[8:])


def _corrupt_json(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:12] = b"!!!!"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("skip", "corrupt", "rule", "path"),
    [
        (("config.json",), None, "config-json", "config.json"),
        (("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
          "model.safetensors.index.json"), None, "safetensors-only", "."),
        ((), _corrupt_length, "safetensors-header", "model-00001-of-00002.safetensors"),
        ((), _corrupt_json, "safetensors-header", "model-00001-of-00002.safetensors"),
    ],
)  # fmt: skip
def test_a_broken_model_in_s3_fails_preflight_naming_the_file(  # noqa: PLR0917 - fixtures + cases
    stack: LocalStack,
    import_config: MakeConfig,
    merged_dir: Path,
    tmp_path: Path,
    skip: tuple[str, ...],
    corrupt: Callable[[Path], None] | None,
    rule: str,
    path: str,
) -> None:
    model = tmp_path / "model"
    shutil.copytree(merged_dir, model)
    (model / "manifest.json").unlink()  # the manifest would catch a changed file first
    if corrupt is not None:
        corrupt(model / "model-00001-of-00002.safetensors")
    put_model(stack, model, skip=skip)
    with pytest.raises(PreflightError) as info:
        BedrockImporter(import_config()).import_model(URI)
    assert (rule, path) in {(f.rule, f.path) for f in info.value.findings}, info.value
    assert str(info.value).startswith(f"{URI} fails Bedrock Custom Model Import preflight")
    assert job_names(stack) == []


def test_objects_that_differ_from_the_manifest_are_named(
    stack: LocalStack, import_config: MakeConfig, merged_dir: Path
) -> None:
    put_model(stack, merged_dir)
    s3 = stack.aws_config().client("s3")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "notes.txt", Body=b"not part of the model")
    with pytest.raises(ArtifactError, match=r"merged/notes\.txt is not part of the model"):
        BedrockImporter(import_config()).import_model(URI)
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "notes.txt")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "config.json", Body=b"{}")
    with pytest.raises(ArtifactError, match=r"merged/config\.json: 2 bytes in S3, the manifest says"):
        BedrockImporter(import_config()).import_model(URI)
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "config.json")
    with pytest.raises(ArtifactError, match=r"merged/config\.json is listed in the model's manifest"):
        BedrockImporter(import_config()).import_model(URI)
    assert job_names(stack) == []


def test_nothing_there_and_no_bucket_are_named(
    stack: LocalStack, import_config: MakeConfig, merged_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ArtifactError, match=rf"nothing at s3://{BUCKET}/empty/: no objects"):
        BedrockImporter(import_config()).import_model(f"s3://{BUCKET}/empty")
    with pytest.raises(ResourceNotFoundError, match=r"the S3 bucket 'nobucket' of s3://nobucket/m/ does not"):
        BedrockImporter(import_config()).import_model("s3://nobucket/m/")
    with pytest.raises(ArtifactError, match=r"not a valid S3 bucket name"):
        BedrockImporter(import_config()).import_model("s3://No_Such/m/")
    assert job_names(stack) == [] and keys(stack) == []
    # A whole bucket (or tree) given by mistake is not read object by object.
    import bedrock_ft.importing._s3_model as s3_model

    put_model(stack, merged_dir)
    monkeypatch.setattr(s3_model, "MAX_OBJECTS", 3)
    with pytest.raises(ArtifactError, match=rf"s3://{BUCKET}/ holds over 3 objects: that is not one model"):
        BedrockImporter(import_config()).import_model(f"s3://{BUCKET}")
    assert job_names(stack) == []


def test_a_local_model_needs_s3_uri(stack: LocalStack, import_config: MakeConfig, merged_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        BedrockImporter(import_config(s3_uri=None)).import_model(merged_dir)
    assert [p.path for p in info.value.problems] == ["s3_uri"] and "s3://" in str(info.value)
    assert job_names(stack) == [] and keys(stack) == []


def test_cli_imports_from_a_prefix_without_s3_uri(
    stack: LocalStack,
    merged_dir: Path,
    run_cli: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    put_model(stack, merged_dir)
    role = ("--role-arn", "arn:aws:iam::123456789012:role/BedrockImport")
    code, out, err = run_cli("import", URI, "--model-name", "from-s3", *role, "--json")
    assert code == 0, err
    imported = ImportedModel.model_validate(json.loads(out))
    assert imported.status == "Completed" and imported.s3_uri == URI and imported.upload is None
    # A local model still needs --s3-uri: the one-line reason names it.
    code, _, err = run_cli("import", str(merged_dir), "--model-name", "local", *role)
    assert code == 1 and "s3_uri: not set" in err, err
    # delete --delete-artifacts removes what the model was imported from: here, the job's output.
    code, out, err = run_cli("models", "delete", "from-s3", "--delete-artifacts")
    assert code == 0, err
    assert keys(stack, PREFIX) == []
