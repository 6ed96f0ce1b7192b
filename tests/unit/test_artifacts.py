from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import bedrock_ft
from bedrock_ft import _io
from bedrock_ft.artifacts import (
    MANIFEST_NAME,
    AdapterArtifact,
    DatasetArtifact,
    EvaluationReport,
    FileEntry,
    ImportedModel,
    ModelArtifact,
    TokenStats,
    load_artifact,
)
from bedrock_ft.errors import ArtifactError
from bedrock_ft.preflight import Finding, PreflightReport, Severity


def samples(root: Path) -> list[bedrock_ft.Artifact]:
    return [
        DatasetArtifact(
            train_uri=str(root / "train_dataset.json"),
            test_uri="s3://bucket/data/test_dataset.json",
            format="openorca",
            chat_template_name="chatml",
            chat_template="{{ messages }}",
            record_counts={"train": 10, "test": 2},
            dropped={"empty_response": 1},
            token_stats=TokenStats(min=3, median=10.5, p95=20.0, max=30, max_length=2048),
            config_hash="abc",
        ),
        AdapterArtifact(
            adapter_dir=str(root / "adapter"),
            base_model="mistralai/Mistral-7B-v0.3",
            architecture="mistral",
            lora={"r": 16},
            train_metrics={"loss": 1.25},
        ),
        ModelArtifact(
            model_dir=str(root / "merged"),
            architecture="llama",
            dtype="bfloat16",
            parameter_count=134_515_008,
            total_bytes=123,
            files=(FileEntry(path="model.safetensors", size=123, sha256="0" * 64),),
            preflight=PreflightReport(
                model_dir=str(root / "merged"),
                findings=(Finding(rule="r", path="config.json", message="m", severity=Severity.WARNING),),
            ),
        ),
        ImportedModel(
            model_arn="arn:aws:bedrock:us-east-1:123456789012:imported-model/abc",
            model_name="m",
            api_formats=("BedrockCompletion",),
            cmus_per_copy=1,
        ),
        EvaluationReport(
            model_id="m", metrics={"qa": {"f1_score": 0.5}}, records_uri=str(root / "records.jsonl")
        ),
    ]


def test_every_artifact_round_trips_through_its_manifest(tmp_path: Path) -> None:
    for i, artifact in enumerate(samples(tmp_path)):
        directory = tmp_path / f"a{i}"
        manifest = artifact.write(directory)
        assert manifest == directory / MANIFEST_NAME
        assert type(artifact).read(directory) == artifact
        assert load_artifact(manifest) == artifact  # dispatch on "kind"


def test_manifest_records_version_kind_and_config_hash(tmp_path: Path) -> None:
    artifact = samples(tmp_path)[0]
    data = json.loads(artifact.write(tmp_path).read_text())
    assert data["kind"] == "dataset"
    assert data["bedrock_ft_version"] == bedrock_ft.__version__
    assert data["config_hash"] == "abc"


def test_paths_inside_the_directory_are_relative_so_it_can_move(tmp_path: Path) -> None:
    src = tmp_path / "run"
    artifact = DatasetArtifact(train_uri=str(src / "train.jsonl"), test_uri="s3://b/k", format="qa")
    artifact.write(src)
    stored = json.loads((src / MANIFEST_NAME).read_text())
    assert stored["train_uri"] == "train.jsonl"
    assert stored["test_uri"] == "s3://b/k"
    shutil.move(src, tmp_path / "moved")
    moved = DatasetArtifact.read(tmp_path / "moved")
    assert moved.train_uri == str((tmp_path / "moved" / "train.jsonl").resolve())
    assert moved.test_uri == "s3://b/k"


def test_reading_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    samples(tmp_path)[1].write(tmp_path)
    with pytest.raises(ArtifactError, match="holds a 'adapter' artifact, expected 'dataset'"):
        DatasetArtifact.read(tmp_path)


def test_missing_and_broken_manifests_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no manifest here"):
        load_artifact(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text('{"kind": "dataset",\n "train_uri": }')
    with pytest.raises(ArtifactError, match=r"manifest\.json: not valid JSON at line 2"):
        load_artifact(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text('{"kind": "dataset"}')
    with pytest.raises(ArtifactError, match="invalid 'dataset' manifest: train_uri: Field required"):
        DatasetArtifact.read(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("[]")
    with pytest.raises(ArtifactError, match="not a bedrock-ft manifest"):
        load_artifact(tmp_path)


def test_an_interrupted_write_keeps_the_old_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = DatasetArtifact(train_uri="s3://b/one", format="qa")
    first.write(tmp_path)

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_io.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        DatasetArtifact(train_uri="s3://b/two", format="qa").write(tmp_path)
    monkeypatch.undo()
    assert DatasetArtifact.read(tmp_path).train_uri == "s3://b/one"
    assert os.listdir(tmp_path) == [MANIFEST_NAME]  # the temp file is gone too
