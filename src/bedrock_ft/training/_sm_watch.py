"""SageMakerJob: a bedrock-ft training job in SageMaker, to watch, stop, and fetch the adapter from.

``SageMakerJob.attach(name)`` finds a job submitted earlier (by this process or another). ``wait()``
shows the job's status and secondary status, streams its log from CloudWatch Logs (where the console
and the SDK's ``logs=True`` read it), and returns the adapter when the job completes. A failed job's
``FailureReason`` and the tail of its log arrive as a :class:`~bedrock_ft.errors.TrainingError`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import ResourceNotFoundError, TrainingError, translate_client_errors
from bedrock_ft.progress import Progress, quiet

if TYPE_CHECKING:
    from bedrock_ft.artifacts import AdapterArtifact
    from bedrock_ft.aws import AwsConfig

__all__ = ["SageMakerJob", "job_record"]

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = ("Completed", "Failed", "Stopped")
MARKER = "BEDROCK_FT_VERSION"  # in the Environment of every job bedrock-ft submits


class SageMakerJob:
    """A bedrock-ft SageMaker training job, by name. ``aws`` picks the account, region and endpoints."""

    def __init__(
        self,
        name: str,
        *,
        aws: AwsConfig | None = None,
        poll_interval: float = 15.0,
        progress: Progress | None = None,
        logs: bool = True,
    ) -> None:
        from bedrock_ft.aws import AwsConfig

        self.name = name.rsplit("/", 1)[-1] if name.startswith("arn:") else name
        self.aws = aws or AwsConfig()
        self.poll_interval = poll_interval
        self._say: Progress = progress or quiet
        self.show_logs = logs
        self._tokens: dict[str, str | None] = {}
        self._tail: list[str] = []

    # --- finding ------------------------------------------------------------------------------------

    @classmethod
    def attach(
        cls,
        name_or_arn: str,
        *,
        aws: AwsConfig | None = None,
        poll_interval: float = 15.0,
        progress: Progress | None = None,
        logs: bool = True,
    ) -> SageMakerJob:
        """The job called ``name_or_arn``; a clear error when there is none, or when bedrock-ft did not
        submit it (it would not write an adapter bedrock-ft can read)."""
        job = cls(name_or_arn, aws=aws, poll_interval=poll_interval, progress=progress, logs=logs)
        described = job.describe()
        environment = described.get("Environment") or {}
        if MARKER not in environment:
            spec = described.get("AlgorithmSpecification") or {}
            ran = spec.get("TrainingImage") or spec.get("AlgorithmName") or "another image"
            raise TrainingError(
                f"training job {job.name} was not submitted by bedrock-ft (its environment has no {MARKER}; "
                f"it ran {ran}): attach only to jobs QLoRATrainer submitted"
            )
        return job

    def _client(self, service: str) -> Any:
        return self.aws.client(service)

    def describe(self) -> dict[str, Any]:
        """DescribeTrainingJob's answer."""
        from botocore.exceptions import ClientError

        try:
            result: dict[str, Any] = self._client("sagemaker").describe_training_job(
                TrainingJobName=self.name
            )
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", "")
            if "not found" in message.lower():
                raise ResourceNotFoundError(
                    f"no SageMaker training job named {self.name} in {self.aws.resolved_region()}"
                ) from None
            with translate_client_errors("DescribeTrainingJob"):
                raise
        return result

    @property
    def status(self) -> str:
        return str(self.describe()["TrainingJobStatus"])

    # --- control ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask SageMaker to stop the job (it uploads what /opt/ml/model holds, then ends Stopped);
        the checkpoints stay, so a re-run with ``resume=True`` continues from them."""
        with translate_client_errors("StopTrainingJob"):
            self._client("sagemaker").stop_training_job(TrainingJobName=self.name)
        self._say(f"training job {self.name}: stop requested")

    # --- watching -----------------------------------------------------------------------------------

    def logs(self) -> list[str]:
        """The log lines written since the last call (every stream of the job: restarts make new ones)."""
        from botocore.exceptions import ClientError

        client = self._client("logs")
        lines: list[str] = []
        try:
            streams = client.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{self.name}/")
        except ClientError:
            return lines  # no log group yet: the job has not started its container
        for stream in sorted(streams.get("logStreams", []), key=lambda s: s.get("creationTime", 0)):
            stream_name = stream["logStreamName"]
            while True:
                kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream_name,
                                          "startFromHead": True}  # fmt: skip
                token = self._tokens.get(stream_name)
                if token:
                    kwargs["nextToken"] = token
                page = client.get_log_events(**kwargs)
                events = page.get("events", [])
                lines.extend(event["message"] for event in events)
                self._tokens[stream_name] = page.get("nextForwardToken")
                if not events or page.get("nextForwardToken") == token:
                    break
        self._tail = (self._tail + lines)[-30:]
        return lines

    def wait(self, *, timeout: float | None = None, output_dir: str | Path | None = None) -> AdapterArtifact:
        """Watch the job to its end and return the adapter it wrote (downloaded into ``output_dir``)."""
        described = self.watch(timeout=timeout)
        return self._outcome(described, output_dir)

    def watch(self, *, timeout: float | None = None) -> dict[str, Any]:
        """Report status changes and log lines until the job ends; its last description."""
        start = time.monotonic()
        seen: tuple[str, str] | None = None
        status = _StatusLine(self.name)
        try:
            while True:
                described = self.describe()
                state = (described["TrainingJobStatus"], described.get("SecondaryStatus", ""))
                if state != seen:
                    seen = state
                    message = _last_message(described)
                    self._say(
                        f"training job {self.name}: {state[0]} · {state[1]}"
                        + (f": {message}" if message else "")
                    )
                if self.show_logs:
                    for line in self.logs():
                        status.clear()
                        print(f"  [{self.name}] {line}", file=sys.stderr, flush=True)
                status.show(f"{state[0]} · {state[1]} ({_elapsed(time.monotonic() - start)})")
                if state[0] in TERMINAL:
                    if self.show_logs:
                        for line in self.logs():
                            print(f"  [{self.name}] {line}", file=sys.stderr, flush=True)
                    return described
                if timeout is not None and time.monotonic() - start > timeout:
                    raise TrainingError(
                        f"training job {self.name} is still {state[0]} ({state[1]}) after {timeout:.0f} s; "
                        "it keeps running: attach to it later, or stop it"
                    )
                time.sleep(self.poll_interval)
        finally:
            status.clear()

    def _outcome(self, described: dict[str, Any], output_dir: str | Path | None) -> AdapterArtifact:
        status = described["TrainingJobStatus"]
        if status == "Failed":
            if not self._tail:
                self.logs()
            tail = "\n".join(f"  {line}" for line in self._tail[-15:])
            raise TrainingError(
                f"training job {self.name} failed: {described.get('FailureReason') or 'no reason given'}"
                + (f"\nlast lines of its log:\n{tail}" if tail else "")
            )
        if status == "Stopped":
            checkpoint = (described.get("CheckpointConfig") or {}).get("S3Uri")
            raise TrainingError(
                f"training job {self.name} was stopped ({described.get('SecondaryStatus')}); run again with "
                f"resume=True to continue from its checkpoints" + (f" in {checkpoint}" if checkpoint else "")
            )
        if output_dir is None:
            raise TrainingError("give output_dir: where the job's adapter is downloaded")
        return self.result(output_dir, described)

    # --- outputs ------------------------------------------------------------------------------------

    def result(self, output_dir: str | Path, described: dict[str, Any] | None = None) -> AdapterArtifact:
        """Download the completed job's adapter into ``output_dir`` and return it. With ``merge_in_job`` the
        adapter's ``merged_model`` names the merged model, which stays in S3 (``merged_model_artifact()``)."""
        from bedrock_ft.artifacts import AdapterArtifact, ModelArtifact
        from bedrock_ft.aws import split_s3_uri

        described = described or self.describe()
        if described["TrainingJobStatus"] != "Completed":
            raise TrainingError(
                f"training job {self.name} is {described['TrainingJobStatus']}, not Completed"
            )
        location = described["ModelArtifacts"]["S3ModelArtifacts"]
        if location.endswith(".tar.gz"):
            raise TrainingError(f"training job {self.name} wrote {location}: not a bedrock-ft job's output")
        bucket, prefix = split_s3_uri(location, folder=True)
        target = Path(output_dir)
        s3 = self._client("s3")
        found = _download(s3, bucket, f"{prefix}adapter/", target)
        if not found:
            raise TrainingError(f"training job {self.name} wrote no adapter under {location}adapter/")
        adapter = AdapterArtifact.read(target)
        merged_manifest: str | None = None
        merged_prefix = f"{prefix}merged/"
        with translate_client_errors("GetObject"):
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{merged_prefix}manifest.json")
        if listed.get("KeyCount", 0):
            body = s3.get_object(Bucket=bucket, Key=f"{merged_prefix}manifest.json")["Body"].read()
            merged = ModelArtifact.from_json(body.decode("utf-8"), source=f"s3://{bucket}/{merged_prefix}")
            model_dir = merged.model_dir.strip("/").removeprefix("./")
            merged = merged.model_copy(update={"model_dir": f"s3://{bucket}/{merged_prefix}{model_dir}/"})
            merged_manifest = str(merged.write(target / "merged"))
        checkpoint = (described.get("CheckpointConfig") or {}).get("S3Uri")
        adapter = adapter.model_copy(
            update={
                "training_job": described["TrainingJobArn"],
                "checkpoint_dir": checkpoint,
                "merged_model": merged_manifest,
            }
        )
        adapter.write(target)
        return AdapterArtifact.read(target)


def job_record(job: SageMakerJob, checkpoint: str) -> dict[str, Any]:
    return {"job_name": job.name, "region": job.aws.resolved_region(), "checkpoint_s3_uri": checkpoint}


def _download(s3: Any, bucket: str, prefix: str, target: Path) -> int:
    from bedrock_ft._io import atomic_file

    count = 0
    with translate_client_errors("ListObjectsV2"):
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix))
    for page in pages:
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) :]
            parts = relative.split("/")
            if not relative or any(part in ("", ".", "..") for part in parts):
                raise TrainingError(f"s3://{bucket}/{item['Key']}: not a safe file name to download")
            path = target.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            with translate_client_errors("GetObject"), atomic_file(path) as handle:
                s3.download_fileobj(bucket, item["Key"], handle)
            count += 1
    return count


def _last_message(described: dict[str, Any]) -> str:
    transitions = described.get("SecondaryStatusTransitions") or []
    return str(transitions[-1].get("StatusMessage", "")) if transitions else ""


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class _StatusLine:
    """One live line on a terminal (the job's status and secondary status); nothing elsewhere."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.enabled = sys.stderr.isatty()
        self.shown = False

    def show(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\r\033[K{self.name}: {text}")
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data
