"""AwsConfig against a real HTTP server (moto on loopback), through real boto3 clients."""

from __future__ import annotations

import threading

import pytest

from bedrock_ft import errors as E
from bedrock_ft.aws import AwsConfig, env_var_for_service, resolve_endpoint


def test_env_var_names_follow_boto3() -> None:
    assert env_var_for_service("bedrock-runtime") == "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"
    assert env_var_for_service("s3") == "AWS_ENDPOINT_URL_S3"
    assert env_var_for_service("logs") == "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"  # named after the serviceId


@pytest.mark.usefixtures("aws_credentials")
def test_the_service_variable_beats_the_generic_one(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", moto_endpoint)
    logs = AwsConfig().client("logs")
    assert logs.meta.endpoint_url == moto_endpoint
    logs.create_log_group(logGroupName="g")


@pytest.mark.usefixtures("aws_credentials")
def test_aws_endpoint_url_service_variable_is_honoured(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    s3 = AwsConfig().client("s3")
    assert s3.meta.endpoint_url == moto_endpoint
    s3.create_bucket(Bucket="env-bucket")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "env-bucket" in names


@pytest.mark.usefixtures("aws_credentials")
def test_config_endpoint_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    cfg = AwsConfig(endpoint_urls={"s3": moto_endpoint})
    assert resolve_endpoint("s3", cfg) == moto_endpoint
    cfg.client("s3").create_bucket(Bucket="cfg-bucket")


@pytest.mark.usefixtures("aws_credentials")
def test_generic_endpoint_variable_applies_to_every_service(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    assert AwsConfig().client("sts").get_caller_identity()["Account"]


@pytest.mark.usefixtures("aws_credentials")
def test_region_retry_and_timeouts_reach_the_client(moto_endpoint: str) -> None:
    cfg = AwsConfig(region="eu-west-1", endpoint_urls={"s3": moto_endpoint}, max_attempts=3, read_timeout=7)
    client = cfg.client("s3")
    assert client.meta.region_name == "eu-west-1"
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert client.meta.config.read_timeout == 7
    assert cfg.client("s3") is client  # cached


@pytest.mark.usefixtures("aws_credentials")
def test_a_changed_endpoint_variable_gives_a_fresh_client(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    cfg = AwsConfig()
    first = cfg.client("s3")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    second = cfg.client("s3")
    assert second is not first
    assert second.meta.endpoint_url == moto_endpoint


@pytest.mark.usefixtures("aws_credentials")
def test_clients_are_shared_safely_across_threads(moto_endpoint: str) -> None:
    cfg = AwsConfig(endpoint_urls={"s3": moto_endpoint})
    seen: list[object] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        client = cfg.client("s3")
        client.list_buckets()  # and use it concurrently
        seen.append(client)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8
    assert len({id(c) for c in seen}) == 1


@pytest.mark.usefixtures("aws_credentials")
def test_service_errors_are_translated(moto_endpoint: str) -> None:
    s3 = AwsConfig(endpoint_urls={"s3": moto_endpoint}).client("s3")
    with pytest.raises(E.ResourceNotFoundError) as info, E.translate_client_errors():
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    assert info.value.aws is not None
    assert info.value.aws.code == "NoSuchBucket"
    assert info.value.aws.operation == "GetObject"


@pytest.mark.usefixtures("aws_credentials")
def test_an_unreachable_endpoint_says_so() -> None:
    cfg = AwsConfig(endpoint_urls={"s3": "http://127.0.0.1:9"}, max_attempts=1, connect_timeout=1)
    with (
        pytest.raises(E.EndpointUnreachableError, match="AWS_ENDPOINT_URL_<SERVICE>"),
        E.translate_client_errors(),
    ):
        cfg.client("s3").list_buckets()


def test_a_missing_region_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(E.ConfigError, match=r"aws\.region"):
        AwsConfig().client("bedrock")


def test_region_comes_from_aws_region_then_aws_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert AwsConfig().resolved_region() == "ap-south-1"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert AwsConfig().resolved_region() == "eu-central-1"
    assert AwsConfig(region="us-west-2").resolved_region() == "us-west-2"


@pytest.mark.usefixtures("aws_credentials")
def test_ignore_configured_endpoint_urls_is_honoured(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert resolve_endpoint("s3") is None
    assert AwsConfig().client("s3").meta.endpoint_url.startswith("https://s3.")
    assert resolve_endpoint("s3", AwsConfig(endpoint_urls={"s3": moto_endpoint})) == moto_endpoint


@pytest.mark.usefixtures("aws_credentials")
def test_a_botocore_config_is_merged_over_ours(moto_endpoint: str) -> None:
    from botocore.config import Config

    client = AwsConfig(endpoint_urls={"s3": moto_endpoint}, read_timeout=7).client(
        "s3", config=Config(connect_timeout=3)
    )
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (3, 7)
    # Configs are compared by value: a different one never gets a cached client made for another.
    cfg = AwsConfig(endpoint_urls={"s3": moto_endpoint})
    timeouts = [
        cfg.client("s3", config=Config(read_timeout=100 + i)).meta.config.read_timeout for i in range(5)
    ]
    assert timeouts == [100, 101, 102, 103, 104]
    assert cfg.client("s3", config=Config(read_timeout=101)) is cfg.client(
        "s3", config=Config(read_timeout=101)
    )


@pytest.mark.usefixtures("aws_credentials")
def test_client_side_parameter_errors_are_translated() -> None:
    runtime = AwsConfig(endpoint_urls={"bedrock-runtime": "http://127.0.0.1:9"}).client("bedrock-runtime")
    with pytest.raises(E.RequestValidationError, match="modelId"), E.translate_client_errors():
        runtime.invoke_model(modelId="", body=b"{}")


def test_an_unknown_profile_names_the_setting() -> None:
    with pytest.raises(E.ConfigError, match=r"aws\.profile"):
        AwsConfig(profile="no-such-profile").client("s3")
