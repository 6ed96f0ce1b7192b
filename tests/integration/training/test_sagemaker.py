"""backend='sagemaker' against the local stack: the real sagemaker SDK submits, the local SageMaker runs
the job's own command (the SDK's driver script, then the training entrypoint) in a subprocess, and the
adapter comes back through the local S3."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import (
    BedrockImporter,
    ImportConfig,
    ImportedModelClient,
    InvokeConfig,
    QLoRAConfig,
    QLoRATrainer,
    TrainingConfig,
    TrainingError,
)
from bedrock_ft.artifacts import DatasetArtifact
from bedrock_ft.local import LocalStack
from bedrock_ft.training._sagemaker_config import SageMakerConfig

from .conftest import FAST

pytestmark = pytest.mark.slow

ROLE = "arn:aws:iam::123456789012:role/bedrock-ft-training"
IMPORT_ROLE = "arn:aws:iam::123456789012:role/bedrock-ft-import"


@pytest.fixture
def stack(new_stack: Callable[..., LocalStack], aws_credentials: None) -> LocalStack:
    started = new_stack(checkpoint_sync_seconds=0.5)
    started.aws_config().client("s3").create_bucket(Bucket="jobs")
    return started


def sm_training(stack: LocalStack, out: Path, **job: Any) -> TrainingConfig:
    settings: dict[str, Any] = {
        "role_arn": ROLE,
        "output_s3_uri": "s3://jobs/runs",
        "aws": stack.aws_config(),
        "poll_interval_s": 0.5,
        **job,
    }
    extra = {k: settings.pop(k) for k in ("max_steps", "save_steps", "base_model") if k in settings}
    return TrainingConfig(**{**FAST, "max_steps": 4, **extra, "output_dir": str(out), "backend": "sagemaker",
                             "sagemaker": SageMakerConfig(**settings)})  # fmt: skip


class _Connections:
    """Every address this process connects a socket to (an audit hook: it observes, it changes nothing)."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.active = False

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.active and event == "socket.connect":
            self.seen.append(args[1])


_CONNECTIONS = _Connections()
sys.addaudithook(_CONNECTIONS.hook)


@pytest.fixture
def connections() -> Iterator[_Connections]:
    _CONNECTIONS.seen.clear()
    _CONNECTIONS.active = True
    yield _CONNECTIONS
    _CONNECTIONS.active = False


def test_a_job_trains_merges_and_its_s3_output_imports_and_answers(
    stack: LocalStack, qa_dataset: DatasetArtifact, tmp_path: Path, connections: _Connections
) -> None:
    from bedrock_ft._shapes import input_errors

    messages: list[str] = []
    training = sm_training(stack, tmp_path / "run", spot=True, merge_in_job=True, max_steps=2)
    # The bundled model, trained in the job: short sequences keep its two steps quick on CPU.
    training = training.replace(base_model="embedded", max_length=64, per_device_batch_size=2)
    adapter = QLoRATrainer(QLoRAConfig(), training, progress=messages.append).train(qa_dataset)
    connections.active = False

    # The adapter came back from the job's S3 output, with the job's own metrics.
    assert (Path(adapter.adapter_dir) / "adapter_config.json").is_file()
    assert adapter.training_job and adapter.training_job.startswith("arn:aws:sagemaker:")
    assert adapter.train_metrics.global_step == 2
    assert adapter.checkpoint_dir and adapter.checkpoint_dir.startswith("s3://jobs/runs/checkpoints/")
    name = adapter.training_job.rsplit("/", 1)[-1]
    described = stack.service.sagemaker.describe(name)
    statuses = [t["Status"] for t in described["SecondaryStatusTransitions"]]
    assert statuses == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://jobs/runs/{name}/output/model/"
    assert any("Training" in m for m in messages)

    # What was sent is what SageMaker's service model accepts, down to patterns and enums.
    request = {k: v for k, v in described.items() if k in _create_members()}
    assert input_errors("sagemaker", "CreateTrainingJob", request) == []
    assert request["OutputDataConfig"]["CompressionType"] == "NONE"
    assert request["EnableManagedSpotTraining"] is True
    assert request["Environment"]["BEDROCK_FT_VERSION"]

    # The SDK's telemetry went nowhere: every connection was to the stack on loopback.
    hosts = {address[0] for address in connections.seen if isinstance(address, tuple)}
    assert hosts and hosts <= {"127.0.0.1", "::1", "0.0.0.0"}, hosts

    # The job's log is in CloudWatch Logs, where the SDK's logs=True reads it.
    logs = stack.aws_config().client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=name)
    events = logs.get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamName=streams["logStreams"][0]["logStreamName"],
        startFromHead=True,
    )
    text = "\n".join(e["message"] for e in events["events"])
    assert "checking, not installing" in text and "adapter written to" in text

    # The merged model stayed in S3; BedrockImporter imports it from there, and it answers.
    merged = adapter.merged_model_artifact()
    assert merged is not None
    assert merged.model_dir == f"s3://jobs/runs/{name}/output/model/merged/model/"
    settings = ImportConfig(
        model_name="from-job", role_arn=IMPORT_ROLE, aws=stack.aws_config(), poll_interval=0.3
    )
    imported = BedrockImporter(settings).import_model(merged)
    assert imported.upload is None and imported.s3_uri == merged.model_dir
    client = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config()))
    answer = client.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=8)
    assert answer.text.strip() and answer.output_tokens

    # Re-running the finished run returns it without a new job.
    again = QLoRATrainer(QLoRAConfig(), training.replace(resume=True)).train(qa_dataset)
    assert again.training_job == adapter.training_job
    assert len(stack.service.sagemaker.list({})["TrainingJobSummaries"]) == 1


def _create_members() -> set[str]:
    from bedrock_ft._shapes import operation_model

    return set(operation_model("sagemaker", "CreateTrainingJob").input_shape.members)


def _checkpoint_keys(stack: LocalStack, prefix: str) -> list[str]:
    listed = stack.aws_config().client("s3").list_objects_v2(Bucket="jobs", Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def test_a_spot_interruption_resumes_from_the_s3_checkpoint(
    new_stack: Callable[..., LocalStack], aws_credentials: None, qa_dataset: DatasetArtifact, tmp_path: Path
) -> None:
    stack = new_stack(checkpoint_sync_seconds=0.3, spot_interruption_after_checkpoints=1)
    stack.aws_config().client("s3").create_bucket(Bucket="jobs")
    training = sm_training(stack, tmp_path / "run", spot=True, max_steps=6, save_steps=2)
    job = QLoRATrainer(QLoRAConfig(), training).submit(qa_dataset)

    # The client was "killed" after submitting: a new one re-attaches to the running job.
    messages: list[str] = []
    adapter = QLoRATrainer(QLoRAConfig(), training.replace(resume=True), progress=messages.append).train(
        qa_dataset
    )
    assert any("re-attaching to training job" in m for m in messages), messages
    assert adapter.train_metrics.global_step == 6
    assert len(stack.service.sagemaker.list({})["TrainingJobSummaries"]) == 1
    described = stack.service.sagemaker.describe(job.name)
    statuses = [t["Status"] for t in described["SecondaryStatusTransitions"]]
    assert statuses.count("Training") == 2 and "Interrupted" in statuses and "Restarting" in statuses
    # The second container started from the checkpoint the first one synced to S3, not from step 0.
    log = (stack.service.sagemaker.job_dir(job.name) / "job.log").read_text()
    resumed = [line for line in log.splitlines() if "resuming from checkpoint-" in line]
    assert resumed, "the restarted container did not resume from the restored checkpoint"
    assert int(resumed[-1].rsplit("checkpoint-", 1)[1].split()[0]) >= 2
    assert any(key.endswith("/trainer_state.json") for key in _checkpoint_keys(stack, "runs/checkpoints/"))


def test_a_failing_job_reports_its_reason_and_log_and_a_stop_ends_it(
    stack: LocalStack, qa_dataset: DatasetArtifact, tmp_path: Path
) -> None:
    # A base model the job can't load: the client can't know, the job fails inside.
    training = sm_training(stack, tmp_path / "bad", base_job_name="failing")
    training = training.replace(base_model="no-such-org/no-such-model")
    with pytest.raises(TrainingError) as failed:
        QLoRATrainer(QLoRAConfig(), training).train(qa_dataset)
    text = str(failed.value)
    assert "failed: AlgorithmError: " in text and "no-such-org/no-such-model" in text
    assert "last lines of its log" in text and "exit code: 1" in text

    # A stop: the job ends Stopped, and the user is told how to continue.
    running = sm_training(stack, tmp_path / "stopped", max_steps=500, base_job_name="stopping")
    job = QLoRATrainer(QLoRAConfig(), running).submit(qa_dataset)
    deadline = time.monotonic() + 60
    while job.describe()["SecondaryStatus"] != "Training":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    job.stop()
    with pytest.raises(TrainingError, match=r"was stopped .* resume=True"):
        job.wait(output_dir=tmp_path / "stopped")
    assert stack.service.sagemaker.describe(job.name)["TrainingJobStatus"] == "Stopped"


def test_bad_settings_are_refused_before_anything_is_sent(stack: LocalStack, qa_dataset: DatasetArtifact,
                                                          tmp_path: Path) -> None:  # fmt: skip
    from bedrock_ft import ConfigError
    from bedrock_ft.errors import ResourceNotFoundError
    from bedrock_ft.training import SageMakerJob

    base = {"role_arn": ROLE, "output_s3_uri": "s3://jobs/runs"}
    cases = {
        "instance_type": ({"instance_type": "ml.nope.xlarge"}, "ResourceConfig.InstanceType"),
        "role_arn": ({"role_arn": "arn:aws:iam::12:role/x"}, "RoleArn"),
        "base_job_name": ({"base_job_name": "bad_name!"}, "base_job_name"),
        "max_wait_s": (
            {"spot": True, "max_runtime_s": 3600, "max_wait_s": 600},
            "shorter than max_runtime_s",
        ),
        "output_s3_uri": ({"output_s3_uri": "jobs/runs"}, "not an s3:// URI"),
    }
    for field, (settings, expected) in cases.items():
        with pytest.raises(ConfigError) as bad:
            SageMakerConfig(**{**base, **settings})
        assert expected in str(bad.value) and field in str(bad.value), (field, str(bad.value))

    missing = sm_training(stack, tmp_path / "missing", output_s3_uri="s3://no-such-bucket/runs")
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket' does not exist"):
        QLoRATrainer(QLoRAConfig(), missing).train(qa_dataset)
    assert stack.service.sagemaker.list({})["TrainingJobSummaries"] == []

    aws = stack.aws_config()
    with pytest.raises(ResourceNotFoundError, match="no SageMaker training job named ghost"):
        SageMakerJob.attach("ghost", aws=aws)
    # A job another tool submitted (it runs a plain command, and no bedrock-ft):
    aws.client("sagemaker").create_training_job(
        TrainingJobName="someone-else",
        AlgorithmSpecification={"TrainingImage": "other:1", "TrainingInputMode": "File",
                                "ContainerEntrypoint": ["/bin/sh"], "ContainerArguments": ["-c", "true"]},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": "s3://jobs/other"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )  # fmt: skip
    assert stack.service.sagemaker.wait("someone-else")["TrainingJobStatus"] == "Completed"
    with pytest.raises(TrainingError, match="not submitted by bedrock-ft"):
        SageMakerJob.attach("someone-else", aws=aws)
