"""``bedrock-ft jobs``: SageMaker training jobs that bedrock-ft submitted (status, wait, stop)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bedrock_ft.cli._common import JsonOpt, ProfileOpt, RegionOpt, err, print_json, say

__all__ = ["jobs_status", "jobs_stop", "jobs_wait"]

NameArg = Annotated[str, typer.Argument(help="Training job name or ARN.")]


def _job(name: str, region: str | None, profile: str | None, *, quiet: bool = False) -> Any:
    from bedrock_ft.aws import AwsConfig
    from bedrock_ft.training import SageMakerJob

    aws = AwsConfig(region=region, profile=profile)
    return SageMakerJob.attach(name, aws=aws, progress=None if quiet else say, poll_interval=15.0)


def jobs_status(
    name: NameArg, region: RegionOpt = None, profile: ProfileOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a training job's status, secondary status, and failure reason."""
    described = _job(name, region, profile, quiet=True).describe()
    keys = ("TrainingJobName", "TrainingJobStatus", "SecondaryStatus", "FailureReason", "ModelArtifacts")
    summary = {k: described[k] for k in keys if k in described}
    if as_json:
        print_json(summary)
        return
    err.print(
        f"{described['TrainingJobName']}: {described['TrainingJobStatus']} · "
        f"{described.get('SecondaryStatus')}"
    )
    if described.get("FailureReason"):
        err.print(f"failure: {described['FailureReason']}", soft_wrap=True)


def jobs_wait(
    name: NameArg,
    output_dir: Annotated[Path, typer.Option(help="Where the job's adapter is downloaded.")],
    region: RegionOpt = None,
    profile: ProfileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Attach to a training job, stream its log until it ends, and download its adapter."""
    adapter = _job(name, region, profile).wait(output_dir=output_dir)
    if as_json:
        print_json(adapter.model_dump(mode="json"))
        return
    typer.echo(f"adapter: {adapter.adapter_dir}")
    if adapter.merged_model:
        typer.echo(f"merged model: {adapter.merged_model}")


def jobs_stop(name: NameArg, region: RegionOpt = None, profile: ProfileOpt = None) -> None:
    """Stop a training job; its checkpoints stay, so the run can be resumed."""
    _job(name, region, profile).stop()
