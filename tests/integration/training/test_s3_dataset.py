"""A dataset built to S3 is read back by the trainer, through boto3, against moto's real HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from bedrock_ft.aws import AwsConfig
from bedrock_ft.data import DatasetBuilder, DatasetConfig, synthetic_qa
from bedrock_ft.errors import DatasetError
from bedrock_ft.training._data import load_messages

pytestmark = pytest.mark.usefixtures("aws_credentials")


def test_training_records_come_from_s3_as_from_disk(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)  # what LocalStack exports; AWS needs nothing
    AwsConfig().client("s3").create_bucket(Bucket="train-data")
    records = synthetic_qa(30, seed=3)
    common = {"format": "qa", "test_size": 5, "chat_template": "chatml"}
    local = DatasetBuilder(DatasetConfig(output=str(tmp_path / "local"), **common), source=records).build()
    remote = DatasetBuilder(DatasetConfig(output="s3://train-data/qa/", **common), source=records).build()
    assert remote.train_uri == "s3://train-data/qa/train_dataset.json"

    from_s3 = load_messages(remote, work_dir=tmp_path)
    assert from_s3 == load_messages(local) and len(from_s3) == 25
    assert list(tmp_path.iterdir()) == [tmp_path / "local"]  # the download was temporary

    AwsConfig().client("s3").delete_object(Bucket="train-data", Key="qa/train_dataset.json")
    with pytest.raises(DatasetError, match=r"s3://train-data/qa/train_dataset\.json: can't download"):
        load_messages(remote, work_dir=tmp_path)
