"""Where a model is imported from: ImportConfig.s3_uri is optional, s3:// models, and the identity of
a model in S3 (no AWS: the import itself is tests/integration/bedrock/test_import_from_s3.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import ArtifactError, ConfigError, ImportConfig
from bedrock_ft.artifacts import FileEntry, ModelArtifact
from bedrock_ft.importing._config import s3_uri_problem
from bedrock_ft.importing._importer import resolve_model
from bedrock_ft.importing._jobs import import_identity, job_request
from bedrock_ft.importing._s3_model import S3Model, S3Object

ROLE = "arn:aws:iam::123456789012:role/BedrockImport"


def config(**changes: Any) -> ImportConfig:
    return ImportConfig(**{"model_name": "m", "role_arn": ROLE, **changes})


def artifact(model_dir: str, files: tuple[FileEntry, ...] = ()) -> ModelArtifact:
    return ModelArtifact(
        model_dir=model_dir, architecture="llama", dtype="bfloat16", parameter_count=1, total_bytes=0,
        files=files,
    )  # fmt: skip


def test_s3_uri_is_optional_until_a_local_model_needs_it() -> None:
    cfg = config()
    assert cfg.s3_uri is None
    for read in (lambda: cfg.bucket, lambda: cfg.prefix, lambda: cfg.upload_uri):
        with pytest.raises(ConfigError) as info:
            read()
        assert [p.path for p in info.value.problems] == ["s3_uri"]
        assert "s3:// prefix of a model already in S3" in str(info.value)
    assert config(s3_uri="s3://bkt/m").upload_uri == "s3://bkt/m/"
    # The job reads wherever s3_uri points: the importer sets it to an S3 model's own prefix.
    request = job_request(config(s3_uri="s3://bkt/jobs/j/merged/"), "m-1")
    assert request["modelDataSource"] == {"s3DataSource": {"s3Uri": "s3://bkt/jobs/j/merged/"}}


def test_a_model_uri_may_be_a_whole_bucket_an_upload_uri_may_not() -> None:
    assert s3_uri_problem("s3://bkt/") is not None
    assert s3_uri_problem("s3://bkt/", whole_bucket=True) is None
    assert s3_uri_problem("s3://bkt/a/b", whole_bucket=True) is None
    assert "not a valid S3 bucket name" in (s3_uri_problem("s3://B_kt/m/") or "")
    assert "'.' or '..'" in (s3_uri_problem("s3://bkt/a/../b/", whole_bucket=True) or "")
    assert "not an s3:// URI" in (s3_uri_problem("https://bkt/m/") or "")


def test_resolve_model_keeps_s3_uris_as_strings(tmp_path: Path) -> None:
    assert resolve_model("s3://bkt/jobs/j/merged/") == (None, "s3://bkt/jobs/j/merged/")
    remote = artifact("s3://bkt/merged/")
    assert resolve_model(remote) == (remote, "s3://bkt/merged/")
    # A manifest on disk that points into S3 keeps the URI (artifact path fields leave URIs alone).
    remote.write(tmp_path)
    found, where = resolve_model(tmp_path)
    assert found is not None and where == "s3://bkt/merged/"
    with pytest.raises(ArtifactError, match=r"as a str \(a Path turns s3:// into s3:/\)"):
        resolve_model(Path("s3://bkt/merged/"))


def test_an_s3_models_identity_is_its_manifests_sha256_else_etags() -> None:
    objects = (
        S3Object("p/config.json", "config.json", 10, '"e1"'),
        S3Object("p/model.safetensors", "model.safetensors", 99, '"e2-3"'),
    )
    listed = (FileEntry(path="model.safetensors", size=99, sha256="b" * 64),
              FileEntry(path="config.json", size=10, sha256="a" * 64))  # fmt: skip
    with_manifest = S3Model("s3://bkt/p/", "bkt", objects, artifact(".", listed))
    assert with_manifest.from_manifest
    assert with_manifest.identity_files() == [("config.json", "a" * 64), ("model.safetensors", "b" * 64)]
    bare = S3Model("s3://bkt/p/", "bkt", objects, None)
    assert not bare.from_manifest and not S3Model("s3://bkt/p/", "bkt", objects, artifact(".")).from_manifest
    assert bare.identity_files() == [("config.json", 'etag:"e1":10'), ("model.safetensors", 'etag:"e2-3":99')]
    # Same files, same settings: same import; another prefix or other files: another import.
    cfg = config(s3_uri="s3://bkt/p/")
    same = import_identity(cfg, with_manifest.identity_files())
    assert same == import_identity(cfg, with_manifest.identity_files())
    assert same != import_identity(config(s3_uri="s3://bkt/q/"), with_manifest.identity_files())
    assert same != import_identity(cfg, bare.identity_files())
