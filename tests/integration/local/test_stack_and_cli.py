"""LocalStack's environment, and the AWS CLI against the local Bedrock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from bedrock_ft.local import LocalBedrockConfig, LocalStack

from .conftest import invoke_until_ready


def test_the_block_exports_endpoints_and_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "real-account")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREAL")
    with LocalStack() as stack:
        assert os.environ["AWS_ENDPOINT_URL_BEDROCK"] == stack.bedrock_url
        assert os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == stack.bedrock_url
        assert os.environ["AWS_ENDPOINT_URL_S3"] == stack.s3_url
        assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
        assert "AWS_PROFILE" not in os.environ
        assert stack.bedrock_url.startswith("http://127.0.0.1:")
        # Plain boto3, no endpoint argument: the exported variables route it here.
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="plain")
        assert "plain" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert boto3.client("bedrock").list_imported_models()["modelSummaries"] == []
        assert "export AWS_ENDPOINT_URL_BEDROCK=" in stack.shell_exports()
        data_dir = stack.data_dir
        assert data_dir.is_dir()
    assert os.environ["AWS_PROFILE"] == "real-account"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIAREAL"
    assert "AWS_ENDPOINT_URL_BEDROCK" not in os.environ
    assert not data_dir.exists()  # a temporary state directory goes with the stack


def test_a_non_loopback_host_needs_allow_remote() -> None:
    from bedrock_ft.errors import ConfigError

    with pytest.raises(ConfigError, match="allow_remote"):
        LocalBedrockConfig(host="0.0.0.0")


@pytest.mark.skipif(
    shutil.which("aws") is None and not (Path(sys.executable).parent / "aws").exists(), reason="awscli"
)
def test_aws_cli_lists_and_invokes(embedded_stack: tuple[LocalStack, str], tmp_path: Path) -> None:
    stack, arn = embedded_stack
    from .conftest import client

    invoke_until_ready(client(stack, "bedrock-runtime"), arn, {"prompt": "Hi", "max_gen_len": 1})  # warm it
    aws = (
        str(Path(sys.executable).parent / "aws") if (Path(sys.executable).parent / "aws").exists() else "aws"
    )
    env = {**os.environ, **stack.env}
    listed = subprocess.run(
        [aws, "bedrock", "list-imported-models", "--output", "json"],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert [m["modelArn"] for m in json.loads(listed.stdout)["modelSummaries"]] == [arn]
    out = tmp_path / "out.json"
    body = json.dumps(
        {
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 24,
            "temperature": 0,
        }
    )
    invoked = subprocess.run(
        [aws, "bedrock-runtime", "invoke-model", "--model-id", arn, "--body", body, str(out)],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
    )
    assert invoked.returncode == 0, invoked.stderr
    assert "Paris" in json.loads(out.read_text())["choices"][0]["message"]["content"]
    bad = subprocess.run(
        [
            aws,
            "bedrock",
            "create-model-import-job",
            "--job-name",
            "bad name!",
            "--imported-model-name",
            "m",
            "--role-arn",
            "arn:aws:iam::123456789012:role/r",
            "--model-data-source",
            "s3DataSource={s3Uri=s3://models/x/}",
        ],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0
    assert "ValidationException" in bad.stderr and "jobName" in bad.stderr


def test_an_idle_keep_alive_connection_stays_open_for_the_next_request(
    embedded_stack: tuple[LocalStack, str],
) -> None:
    # botocore's pool sends the next request on a connection however long it sat idle. A server that
    # closes idle connections after a few seconds (uvicorn's default: 5) races with it, and the request
    # fails with "Connection was closed before we received a valid response".
    import socket
    import time
    from urllib.parse import urlparse

    url = urlparse(embedded_stack[0].bedrock_url)
    request = f"GET /imported-models HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode()

    def exchange(sock: socket.socket) -> bytes:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return data  # the server closed the connection
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")
        )
        while len(body) < length:
            body += sock.recv(65536)
        return head

    with socket.create_connection((url.hostname, url.port)) as sock:
        assert exchange(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # longer than uvicorn's default keep-alive
        assert exchange(sock).startswith(b"HTTP/1.1 200"), "the idle connection was closed"


def test_the_docs_cli_v1_command_runs_with_the_cli_this_project_installs(
    embedded_stack: tuple[LocalStack, str], tmp_path: Path
) -> None:
    # The dev extra installs the AWS CLI from PyPI: version 1. docs/local.md shows its command apart from
    # version 2's (whose --cli-binary-format version 1 refuses as an unknown option).
    stack, arn = embedded_stack
    from .conftest import client

    invoke_until_ready(client(stack, "bedrock-runtime"), arn, {"prompt": "Hi", "max_gen_len": 1})
    bindir = Path(sys.executable).parent
    version = subprocess.run(
        [str(bindir / "aws"), "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    assert (version.stdout + version.stderr).startswith("aws-cli/1."), version
    docs = (Path(__file__).resolve().parents[3] / "docs" / "local.md").read_text()
    block = docs.split("# AWS CLI version 1 (`pip install awscli`): the body is sent as written\n", 1)[1]
    command = block.split("```", 1)[0].strip()
    assert "--cli-binary-format" not in command
    env = {**os.environ, **stack.env, "ARN": arn, "PATH": f"{bindir}:{os.environ['PATH']}"}
    ran = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads((tmp_path / "out.json").read_text())["generation"]
