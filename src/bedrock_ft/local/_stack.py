"""``LocalStack``: the local S3 (moto, also serving CloudWatch Logs) and the local Bedrock (also serving
SageMaker training jobs), started together on loopback.

Inside the block, the standard ``AWS_ENDPOINT_URL_*`` variables, dummy credentials and a region
point every boto3 client (and the AWS CLI) at the two servers; leaving the block stops them and
restores the environment::

    with LocalStack() as stack:
        s3 = boto3.client("s3")             # the local S3
        bedrock = boto3.client("bedrock")   # the local Bedrock
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from types import TracebackType
from typing import Any

from bedrock_ft._deps import require
from bedrock_ft.local._config import LocalBedrockConfig
from bedrock_ft.local.engine import InferenceEngine

__all__ = ["LocalStack"]

DUMMY_ACCESS_KEY = "testing"
DUMMY_SECRET_KEY = "testing"


class LocalStack:
    """Context manager for the local S3 and local Bedrock. Keyword arguments override ``config``."""

    def __init__(
        self,
        config: LocalBedrockConfig | None = None,
        *,
        engine: InferenceEngine | None = None,
        export_env: bool = True,
        **overrides: Any,
    ) -> None:
        base = config or LocalBedrockConfig()
        self.config = base.replace(**overrides) if overrides else base
        self.export_env = export_env
        self._engine = engine
        self._moto: Any = None
        self._bedrock: Any = None
        self._saved: dict[str, str | None] = {}
        self.s3_url = ""
        self.bedrock_url = ""

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> LocalStack:
        require("moto", "starlette", "uvicorn", extra="local", feature="the local Bedrock")
        import logging

        from moto.server import ThreadedMotoServer

        from bedrock_ft.local._server import BedrockServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
        self._moto = ThreadedMotoServer(ip_address=self.config.host, port=self.config.s3_port, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.s3_url = f"http://{host}:{port}"
        try:
            self._bedrock = BedrockServer(self.config, s3_endpoint_url=self.s3_url, engine=self._engine)
            self.bedrock_url = self._bedrock.start()
        except BaseException:
            self._moto.stop()
            raise
        if self.export_env:
            self._export()
        return self

    def stop(self) -> None:
        if self.export_env:
            self._restore()
        if self._bedrock is not None:
            self._bedrock.stop()
            self._bedrock = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- what callers use ------------------------------------------------------------------------------

    @property
    def service(self) -> Any:
        """The running :class:`~bedrock_ft.local._server.LocalBedrock` (state, model pool)."""
        if self._bedrock is None:
            raise RuntimeError("the LocalStack is not running")
        return self._bedrock.service

    @property
    def data_dir(self) -> Path:
        return Path(self.service.data_dir)

    @property
    def env(self) -> dict[str, str]:
        """The variables that point AWS SDKs and the AWS CLI at this stack."""
        return {
            "AWS_ENDPOINT_URL_S3": self.s3_url,
            "AWS_ENDPOINT_URL_IAM": self.s3_url,
            "AWS_ENDPOINT_URL_STS": self.s3_url,
            "AWS_ENDPOINT_URL_BEDROCK": self.bedrock_url,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.bedrock_url,
            "AWS_ENDPOINT_URL_SAGEMAKER": self.bedrock_url,
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": self.s3_url,
            "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_KEY,
            "AWS_REGION": self.config.region,
            "AWS_DEFAULT_REGION": self.config.region,
        }

    def shell_exports(self) -> str:
        """``export NAME=value`` lines for a POSIX shell."""
        return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in self.env.items())

    def aws_config(self) -> Any:
        """An :class:`~bedrock_ft.aws.AwsConfig` aimed at this stack, for code that doesn't read the env."""
        from bedrock_ft.aws import AwsConfig

        return AwsConfig(
            region=self.config.region,
            endpoint_urls={
                "s3": self.s3_url,
                "iam": self.s3_url,
                "sts": self.s3_url,
                "bedrock": self.bedrock_url,
                "bedrock-runtime": self.bedrock_url,
                "sagemaker": self.bedrock_url,
                "logs": self.s3_url,
            },
        )

    def _export(self) -> None:
        # The session token and profile of a real account must not leak into the local calls.
        unset = (
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        )
        for name in (*self.env, *unset):
            self._saved.setdefault(name, os.environ.get(name))
        for name in unset:
            os.environ.pop(name, None)
        os.environ.update(self.env)
        _reset_boto3_default_session()

    def _restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
        _reset_boto3_default_session()


def _reset_boto3_default_session() -> None:
    """boto3's module-level session keeps the profile and credentials it saw when it was made."""
    import boto3

    boto3.DEFAULT_SESSION = None
