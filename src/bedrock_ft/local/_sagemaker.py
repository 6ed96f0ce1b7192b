"""The local SageMaker: training jobs that really run, for the SageMaker backend's rehearsal.

moto's training jobs complete the moment they are created and run nothing. Here CreateTrainingJob,
DescribeTrainingJob, ListTrainingJobs and StopTrainingJob are served (SageMaker's JSON protocol, on
the local Bedrock's port, at ``AWS_ENDPOINT_URL_SAGEMAKER``), and each job runs its own command in a
subprocess, with the current Python environment standing in for the image (see ``_sm_container``).

State lives under ``<data dir>/sagemaker/<job name>/job.json``, written atomically. A job found
``InProgress`` when the service starts was cut off with it: it is marked ``Failed`` with that reason.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bedrock_ft._io import atomic_write_text
from bedrock_ft.local._errors import ServiceError

__all__ = ["TrainingJobs"]

log = logging.getLogger("bedrock_ft.local")

OPERATIONS = ("CreateTrainingJob", "DescribeTrainingJob", "ListTrainingJobs", "StopTrainingJob")
TERMINAL = ("Completed", "Failed", "Stopped")
_NOT_FOUND = (
    "Requested resource not found."  # what SageMaker answers for an unknown job (a ValidationException)
)


class TrainingJobs:
    """Training jobs: their records, and the threads that run them."""

    def __init__(
        self,
        data_dir: Path,
        *,
        region: str,
        account_id: str,
        client: Callable[[str], Any],
        sync_interval: float = 1.0,
        interrupt_after: int | None = None,
    ) -> None:
        self.root = data_dir / "sagemaker"
        self.root.mkdir(parents=True, exist_ok=True)
        self.region = region
        self.account_id = account_id
        self.client = client  # service name -> a boto3 client for the local S3 / CloudWatch Logs
        self.sync_interval = sync_interval
        self.interrupt_after = interrupt_after  # complete checkpoints before a simulated spot reclaim
        self._lock = threading.RLock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._runs: dict[str, Any] = {}  # name -> the running JobRun
        self._load()

    # --- state -----------------------------------------------------------------------------------

    def _load(self) -> None:
        for path in sorted(self.root.glob("*/job.json")):
            try:
                job = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                log.warning("skipping unreadable training job record %s", path)
                continue
            if job["TrainingJobStatus"] in ("InProgress", "Stopping"):
                job.update(
                    TrainingJobStatus="Failed",
                    SecondaryStatus="Failed",
                    FailureReason="InternalServerError: the local SageMaker stopped while the job ran",
                )
            self._jobs[job["TrainingJobName"]] = job

    def save(self, job: dict[str, Any]) -> None:
        with self._lock:
            job["LastModifiedTime"] = time.time()
            directory = self.root / job["TrainingJobName"]
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write_text(directory / "job.json", json.dumps(job, indent=1) + "\n")

    def transition(
        self, job: dict[str, Any], secondary: str, message: str, status: str | None = None
    ) -> None:
        """Move the job to ``secondary`` (and ``status``), closing the previous transition."""
        with self._lock:
            stamp = time.time()
            transitions = job.setdefault("SecondaryStatusTransitions", [])
            if transitions and "EndTime" not in transitions[-1]:
                transitions[-1]["EndTime"] = stamp
            entry: dict[str, Any] = {"Status": secondary, "StartTime": stamp, "StatusMessage": message}
            if secondary in TERMINAL:
                entry["EndTime"] = stamp
            transitions.append(entry)
            job["SecondaryStatus"] = secondary
            if status is not None:
                job["TrainingJobStatus"] = status
            self.save(job)
        log.info("training job %s: %s (%s)", job["TrainingJobName"], secondary, message)

    def job_dir(self, name: str) -> Path:
        return self.root / name

    # --- operations --------------------------------------------------------------------------------

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation == "CreateTrainingJob":
            return self.create(params)
        if operation == "DescribeTrainingJob":
            return self.describe(params["TrainingJobName"])
        if operation == "ListTrainingJobs":
            return self.list(params)
        if operation == "StopTrainingJob":
            self.stop(params["TrainingJobName"])
            return {}
        raise ServiceError("UnknownOperationException", f"{operation} is not served by the local SageMaker.")

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        from bedrock_ft.local._sm_container import JobRun

        name = params["TrainingJobName"]
        arn = f"arn:aws:sagemaker:{self.region}:{self.account_id}:training-job/{name.lower()}"
        spec = params.get("AlgorithmSpecification") or {}
        if not spec.get("TrainingImage") and not spec.get("AlgorithmName"):
            raise ServiceError(
                "ValidationException", "AlgorithmSpecification needs a TrainingImage or an AlgorithmName."
            )
        stopping = params.get("StoppingCondition") or {"MaxRuntimeInSeconds": 86400}
        if params.get("EnableManagedSpotTraining"):
            wait = stopping.get("MaxWaitTimeInSeconds")
            if wait is None or wait < stopping.get("MaxRuntimeInSeconds", 86400):
                raise ServiceError(
                    "ValidationException",
                    "Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to "
                    "MaxRuntimeInSeconds",
                )
            if not params.get("CheckpointConfig"):
                log.info(
                    "spot job %s has no CheckpointConfig: an interruption restarts it from scratch", name
                )
        with self._lock:
            if name in self._jobs:
                raise ServiceError(
                    "ResourceInUse",
                    "Training job names must be unique within an AWS account and region, and a training "
                    f"job with this name already exists ({self._jobs[name]['TrainingJobArn']})",
                )
            created = time.time()
            job: dict[str, Any] = {
                **{k: v for k, v in params.items() if k != "Tags"},
                "TrainingJobArn": arn,
                "TrainingJobStatus": "InProgress",
                "SecondaryStatus": "Starting",
                "StoppingCondition": stopping,
                "ModelArtifacts": {"S3ModelArtifacts": ""},
                "CreationTime": created,
                "SecondaryStatusTransitions": [],
                "Tags": params.get("Tags", []),
            }
            self._jobs[name] = job
            self.transition(job, "Starting", "Launching requested ML instances (local: a subprocess)")
            run = JobRun(self, job)
            self._runs[name] = run
        run.start()
        return {"TrainingJobArn": arn}

    def _get(self, name: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(name)
        if job is None:
            raise ServiceError("ValidationException", _NOT_FOUND)
        return job

    def describe(self, name: str) -> dict[str, Any]:
        job = self._get(name)
        with self._lock:
            out = json.loads(json.dumps(job))  # a snapshot: the runner keeps changing the record
        out.pop("Tags", None)
        result: dict[str, Any] = out
        return result

    def list(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            jobs = [dict(job) for job in self._jobs.values()]
        contains = params.get("NameContains")
        status = params.get("StatusEquals")
        jobs = [
            j
            for j in jobs
            if (not contains or contains.lower() in j["TrainingJobName"].lower())
            and (not status or j["TrainingJobStatus"] == status)
        ]
        key = {"Name": "TrainingJobName", "Status": "TrainingJobStatus"}.get(
            params.get("SortBy", "CreationTime"), "CreationTime"
        )
        jobs.sort(key=lambda j: j[key], reverse=params.get("SortOrder", "Descending") == "Descending")
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 10)
        page = jobs[start : start + size]
        summaries = [
            {
                k: j[k]
                for k in (
                    "TrainingJobName",
                    "TrainingJobArn",
                    "CreationTime",
                    "TrainingEndTime",
                    "LastModifiedTime",
                    "TrainingJobStatus",
                    "SecondaryStatus",
                )
                if k in j
            }
            for j in page
        ]
        result: dict[str, Any] = {"TrainingJobSummaries": summaries}
        if start + size < len(jobs):
            result["NextToken"] = str(start + size)
        return result

    def stop(self, name: str) -> None:
        job = self._get(name)
        with self._lock:
            if job["TrainingJobStatus"] != "InProgress":
                raise ServiceError(
                    "ValidationException",
                    f"The request was rejected because the training job is in status "
                    f"{job['TrainingJobStatus']}.",
                )
            self.transition(job, "Stopping", "Stopping the training job", status="Stopping")
            run = self._runs.get(name)
        if run is not None:
            run.request_stop()

    # --- rehearsal switches ----------------------------------------------------------------------

    def interrupt(self, name: str) -> None:
        """Simulate a spot interruption of a running managed-spot job: its process is terminated, the
        checkpoints are synced, and the job restarts on a fresh "instance" with them restored."""
        job = self._get(name)
        if not job.get("EnableManagedSpotTraining"):
            raise ValueError(f"training job {name} is not a managed spot job")
        with self._lock:
            run = self._runs.get(name)
        if run is None or job["TrainingJobStatus"] != "InProgress":
            raise ValueError(f"training job {name} is not running ({job['TrainingJobStatus']})")
        run.request_interrupt()

    def wait(self, name: str, timeout: float = 600.0) -> dict[str, Any]:
        """Block until the job ends (for tests and scripts that drive the service directly)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.describe(name)
            if job["TrainingJobStatus"] in TERMINAL:
                return job
            time.sleep(0.1)
        raise TimeoutError(f"training job {name} still {job['TrainingJobStatus']} after {timeout:.0f} s")

    def finished(self, name: str) -> None:
        with self._lock:
            self._runs.pop(name, None)

    def close(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.request_stop()
        for run in runs:
            run.join(timeout=30)
