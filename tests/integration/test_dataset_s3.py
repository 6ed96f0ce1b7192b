"""S3 sources and outputs against moto's real HTTP server, through real boto3 clients."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.artifacts import DatasetArtifact
from bedrock_ft.aws import AwsConfig
from bedrock_ft.data import DatasetBuilder, DatasetConfig, synthetic_qa
from bedrock_ft.errors import DatasetError

pytestmark = pytest.mark.usefixtures("aws_credentials")
_names = itertools.count()


@pytest.fixture
def aws(moto_endpoint: str) -> AwsConfig:
    return AwsConfig(endpoint_urls={"s3": moto_endpoint})


@pytest.fixture
def bucket(aws: AwsConfig) -> str:
    name = f"datasets-{next(_names)}"
    aws.client("s3").create_bucket(Bucket=name)
    return name


def get_text(aws: AwsConfig, bucket: str, key: str) -> str:
    return str(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def test_build_to_s3_matches_a_local_build(tmp_path: Path, aws: AwsConfig, bucket: str) -> None:
    records = synthetic_qa(50, seed=2)
    common: dict[str, Any] = {"format": "qa", "test_size": 10, "aws": aws}
    local = DatasetBuilder(DatasetConfig(output=str(tmp_path / "local"), **common), source=records).build()
    art = DatasetBuilder(DatasetConfig(output=f"s3://{bucket}/runs/qa/", **common), source=records).build()

    assert art.train_uri == f"s3://{bucket}/runs/qa/train_dataset.json"
    assert art.eval_uri == f"s3://{bucket}/runs/qa/eval_dataset.jsonl"
    for name in ("train_dataset.json", "test_dataset.json", "eval_dataset.jsonl"):
        assert get_text(aws, bucket, f"runs/qa/{name}") == (tmp_path / "local" / name).read_text()
    manifest = DatasetArtifact.from_json(get_text(aws, bucket, "runs/qa/manifest.json"))
    assert manifest == art
    assert local.record_counts == art.record_counts == {"train": 40, "test": 10}


def test_a_missing_output_bucket_fails_before_any_work(aws: AwsConfig) -> None:
    read: list[int] = []

    def records() -> Iterator[dict[str, str]]:
        read.append(1)
        yield from synthetic_qa(5)

    cfg = DatasetConfig(output="s3://no-such-bucket-here/x", format="qa", aws=aws)
    with pytest.raises(DatasetError) as info:
        DatasetBuilder(cfg, source=records()).build()
    assert info.value.field == "output"
    assert "bucket 'no-such-bucket-here' does not exist" in str(info.value)
    assert read == []


def test_a_previous_s3_build_is_refused_unless_overwrite(aws: AwsConfig, bucket: str) -> None:
    cfg = DatasetConfig(output=f"s3://{bucket}/ds", format="qa", test_size=0.2, aws=aws)
    DatasetBuilder(cfg, source=synthetic_qa(20)).build()
    with pytest.raises(DatasetError, match=r"holds a previous build \(.*manifest\.json"):
        DatasetBuilder(cfg, source=synthetic_qa(30)).build()
    art = DatasetBuilder(cfg.replace(overwrite=True, test_size=0), source=synthetic_qa(30)).build()
    assert art.record_counts == {"train": 30, "test": 0}
    keys = sorted(o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["ds/manifest.json", "ds/train_dataset.json"]  # the old test and eval files are gone
    assert len(get_text(aws, bucket, "ds/train_dataset.json").splitlines()) == 30


def test_a_previous_build_under_a_busy_prefix_is_found(aws: AwsConfig, bucket: str) -> None:
    cfg = DatasetConfig(output=f"s3://{bucket}/ds", format="qa", test_size=0, aws=aws)
    DatasetBuilder(cfg, source=synthetic_qa(5)).build()
    s3 = aws.client("s3")
    with ThreadPoolExecutor(8) as pool:  # more keys before the build's than one listing page holds
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=f"ds/a{i:04d}.log", Body=b""), range(1001)))
    with pytest.raises(DatasetError, match=r"holds a previous build \(manifest\.json, train_dataset\.json\)"):
        DatasetBuilder(cfg, source=synthetic_qa(5)).build()


def test_a_failed_s3_overwrite_before_upload_leaves_the_previous_build(
    aws: AwsConfig, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bedrock_ft.data import _builder as builder

    cfg = DatasetConfig(output=f"s3://{bucket}/ds", format="qa", test_size=0.2, aws=aws)
    DatasetBuilder(cfg, source=synthetic_qa(20)).build()
    before = {k: get_text(aws, bucket, k) for k in _keys(aws, bucket)}

    def explode(fh: Any, rows: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(builder, "write_jsonl", explode)
    with pytest.raises(KeyboardInterrupt):
        DatasetBuilder(cfg.replace(overwrite=True), source=synthetic_qa(30)).build()
    assert {k: get_text(aws, bucket, k) for k in _keys(aws, bucket)} == before


def test_an_output_under_the_source_prefix_is_not_read_back(
    tmp_path: Path, aws: AwsConfig, bucket: str
) -> None:
    aws.client("s3").put_object(Bucket=bucket, Key="raw/qa.jsonl", Body=jsonl(synthetic_qa(12)))
    cfg = DatasetConfig(
        source=f"s3://{bucket}/raw/", output=f"s3://{bucket}/raw/out", format="qa", test_size=2, aws=aws
    )
    first = DatasetBuilder(cfg).build()
    second = DatasetBuilder(cfg.replace(overwrite=True)).build()
    assert second.source_records == first.source_records == 12


def _keys(aws: AwsConfig, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=bucket)["Contents"])


def test_read_a_source_from_s3_object_and_prefix(tmp_path: Path, aws: AwsConfig, bucket: str) -> None:
    records = synthetic_qa(40, seed=9)
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key="raw/all.jsonl", Body=jsonl(records))
    s3.put_object(Bucket=bucket, Key="raw/parts/a.jsonl", Body=jsonl(records[:25]))
    s3.put_object(Bucket=bucket, Key="raw/parts/b.jsonl", Body=jsonl(records[25:]))
    s3.put_object(Bucket=bucket, Key="raw/parts/README.md", Body=b"not data")

    def build(source: str, name: str) -> DatasetArtifact:
        cfg = DatasetConfig(source=source, format="qa", output=str(tmp_path / name), aws=aws)
        return DatasetBuilder(cfg).build()

    one = build(f"s3://{bucket}/raw/all.jsonl", "one")
    parts = build(f"s3://{bucket}/raw/parts/", "parts")
    assert one.source_records == parts.source_records == 40
    assert Path(one.train_uri).read_bytes() == Path(parts.train_uri).read_bytes()


def test_a_missing_source_object_names_the_uri(tmp_path: Path, aws: AwsConfig, bucket: str) -> None:
    cfg = DatasetConfig(source=f"s3://{bucket}/nope.jsonl", format="qa", output=str(tmp_path / "o"), aws=aws)
    with pytest.raises(DatasetError, match=rf"source s3://{bucket}/nope\.jsonl"):
        DatasetBuilder(cfg).build()
    assert not (tmp_path / "o").exists()
