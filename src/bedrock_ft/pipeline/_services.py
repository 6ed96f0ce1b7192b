"""AWS for a run: the credential check of ``target: aws``, and the local stack of ``target: local``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bedrock_ft.errors import PipelineError
from bedrock_ft.pipeline._config import LOCAL_BUCKET, PipelineConfig

__all__ = ["RunServices", "aws_problems"]


class RunServices:
    """The run's AwsConfig; ``target: local`` starts the local stack on first use, with its state in
    ``<run_dir>/local`` (imported models survive between runs), and creates the buckets the config
    names."""

    def __init__(self, config: PipelineConfig, run_dir: Path, say: Callable[[str], None]) -> None:
        self.config = config
        self.run_dir = run_dir
        self.say = say
        self._stack: Any = None
        self._aws: Any = None

    def check_target(self) -> None:
        """target aws: credentials and a region, before any work starts."""
        if self.config.target != "aws":
            return
        from bedrock_ft.aws import AwsConfig

        aws = self.config.aws or AwsConfig()
        problems = aws_problems(aws)
        if problems:
            raise PipelineError(f"target aws: {'; '.join(problems)}. Nothing was run.")

    def aws(self) -> Any:
        """The run's AwsConfig; ``target: local`` starts the local stack on first use."""
        if self._aws is not None:
            return self._aws
        from bedrock_ft.aws import AwsConfig

        if self.config.target == "aws":
            self._aws = self.config.aws or AwsConfig()
            return self._aws
        from bedrock_ft.local import LocalStack

        self.say("starting the local S3 and the local Bedrock")
        stack = LocalStack(data_dir=self.run_dir / "local")
        stack.start()
        self._stack = stack
        self._aws = AwsConfig()  # the stack exported AWS_ENDPOINT_URL_* for every client
        s3 = self._aws.client("s3")
        for bucket in sorted(self._buckets()):
            s3.create_bucket(Bucket=bucket)
        return self._aws

    def _buckets(self) -> set[str]:
        uris = [f"s3://{LOCAL_BUCKET}/"]
        cfg = self.config
        if cfg.dataset is not None:
            uris.append(cfg.dataset.output)
        if cfg.training is not None and cfg.training.sagemaker is not None:
            sm = cfg.training.sagemaker
            uris += [sm.output_s3_uri, sm.checkpoint_s3_uri or ""]
        if cfg.import_ is not None and cfg.import_.s3_uri:
            uris.append(cfg.import_.s3_uri)
        return {u[5:].split("/", 1)[0] for u in uris if u.startswith("s3://")}

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.stop()
        self._stack = self._aws = None


def aws_problems(aws: Any) -> list[str]:
    """What keeps a run from reaching AWS: no credentials, no region."""
    session = aws.session()
    problems = []
    if session.get_credentials() is None:
        problems.append(
            "no AWS credentials found (set AWS_PROFILE or aws.profile, or run `aws configure` or "
            "`aws sso login`)"
        )
    if not (aws.region or session.region_name):
        problems.append("no region (set aws.region in the config, or AWS_REGION)")
    return problems
