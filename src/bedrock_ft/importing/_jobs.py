"""Import jobs: their names and idempotency tokens, waiting for them, and what they produced."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import (
    EndpointUnreachableError,
    ImportJobError,
    QuotaExceededError,
    ServiceUnavailableError,
    ThrottledError,
    translate_client_errors,
)

if TYPE_CHECKING:
    from bedrock_ft.importing._config import ImportConfig

__all__ = [
    "client_token",
    "derived_job_name",
    "failure_message",
    "import_identity",
    "job_request",
    "jobs_named",
    "running_jobs",
    "wait_for_job",
    "wait_until_idle",
]

Say = Callable[[str], None]

TERMINAL = ("Completed", "Failed")


def derived_job_name(model_name: str, identity: str, attempt: int) -> str:
    """``<model name>-<12 hex of the import's identity>``, then ``-r2``, ``-r3`` for later attempts.

    Job names allow no '_' (model names do), and at most 63 characters.
    """
    if not 1 <= attempt <= 99_999:
        raise ValueError(f"attempt {attempt} out of range")
    stem = model_name.replace("_", "-")[:42].rstrip("-") or "model"  # 42 + 13 + "-r99999" <= 63
    name = f"{stem}-{identity[:12]}"
    return name if attempt == 1 else f"{name}-r{attempt}"


def client_token(request: dict[str, Any]) -> str:
    """clientRequestToken: a hash of the request itself, so the same request is the same job."""
    body = json.dumps({k: v for k, v in request.items() if k != "clientRequestToken"}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def jobs_named(bedrock: Any, stem: str) -> list[dict[str, Any]]:
    """Import jobs whose name is ``stem`` or ``stem-rN``, oldest first."""
    found: list[dict[str, Any]] = []
    with translate_client_errors("ListModelImportJobs"):
        for page in bedrock.get_paginator("list_model_import_jobs").paginate(nameContains=stem):
            found.extend(page.get("modelImportJobSummaries", []))
    mine = [
        job
        for job in found
        if job["jobName"] == stem
        or (job["jobName"].startswith(stem + "-r") and job["jobName"][len(stem) + 2 :].isdigit())
    ]
    return sorted(mine, key=lambda job: job["creationTime"])


def running_jobs(bedrock: Any) -> list[dict[str, Any]]:
    with translate_client_errors("ListModelImportJobs"):
        response = bedrock.list_model_import_jobs(statusEquals="InProgress", maxResults=100)
    return list(response.get("modelImportJobSummaries", []))


def _poll(
    check: Callable[[], Any],
    done: Callable[[Any], bool],
    *,
    timeout: float,
    max_interval: float,
    on_wait: Callable[[Any, float], None],
) -> Any:
    """Call ``check`` until ``done`` says so or ``timeout`` passes; returns the last result.

    tenacity drives it: pauses grow from half a second to ``max_interval``, and ``on_wait`` is told of
    each one (progress).
    """
    from tenacity import (
        Retrying,
        retry_if_exception_type,
        retry_if_result,
        stop_after_delay,
        wait_exponential,
    )

    started = time.monotonic()
    transient = (ThrottledError, ServiceUnavailableError, EndpointUnreachableError)
    retrying = Retrying(
        # a throttled or failed status call during a long wait is retried, not the end of the wait
        retry=retry_if_result(lambda result: not done(result)) | retry_if_exception_type(transient),
        wait=wait_exponential(multiplier=0.5, min=0.5, max=max_interval),
        stop=stop_after_delay(timeout),
        before_sleep=lambda state: _tell(state, on_wait, time.monotonic() - started),
        retry_error_callback=_result,
        reraise=True,
    )
    return retrying(check)


def _tell(state: Any, on_wait: Callable[[Any, float], None], elapsed: float) -> None:
    """Report a pause after a result (a pause after a transient error reports nothing)."""
    if state.outcome is not None and not state.outcome.failed:
        on_wait(state.outcome.result(), elapsed)


def _result(state: Any) -> Any:
    """The last result; the last error is raised (a transient one that outlasted the timeout)."""
    return state.outcome.result() if state.outcome is not None else None


def wait_for_job(
    bedrock: Any, job_arn: str, *, timeout: float, max_interval: float, say: Say
) -> dict[str, Any]:
    """Wait for an import job to end; returns GetModelImportJob's answer. Raises :class:`ImportJobError`
    when it failed (with the service's failureMessage) or is still running after ``timeout``."""
    last_said = [0.0]

    def check() -> dict[str, Any]:
        with translate_client_errors("GetModelImportJob"):
            return dict(bedrock.get_model_import_job(jobIdentifier=job_arn))

    def on_wait(job: dict[str, Any], elapsed: float) -> None:
        if elapsed - last_said[0] >= 10 or last_said[0] == 0:
            say(f"import job {job['jobName']}: {job['status']} ({elapsed:.0f} s)")
            last_said[0] = max(elapsed, 1e-9)

    job: dict[str, Any] = _poll(
        check,
        lambda j: j["status"] in TERMINAL,
        timeout=timeout,
        max_interval=max_interval,
        on_wait=on_wait,
    )
    if job["status"] == "Failed":
        message = job.get("failureMessage") or "(the service gave no reason)"
        raise ImportJobError(
            f"import job {job['jobName']} failed: {message}", job_arn=job_arn, failure_message=message
        )
    if job["status"] != "Completed":
        raise ImportJobError(
            f"import job {job['jobName']} is still {job['status']} after {timeout:.0f} s; it goes on in "
            f"Bedrock: wait for it with BedrockImporter.wait({job_arn!r}), or raise timeout",
            job_arn=job_arn,
        )
    return job


def wait_until_idle(
    bedrock: Any, *, on_busy: str, timeout: float, max_interval: float, say: Say, ours: str | None = None
) -> None:
    """Bedrock runs one import job at a time per account: wait for a running one, or fail fast."""
    others = [job for job in running_jobs(bedrock) if job["jobName"] != ours]
    if not others:
        return
    names = ", ".join(job["jobName"] for job in others)
    if on_busy == "fail":
        raise QuotaExceededError(
            f"another import job is running ({names}); Bedrock runs one at a time per account. Wait for "
            "it, or set on_busy='wait'"
        )
    say(f"waiting for import job {names} to finish (Bedrock runs one at a time)")

    def on_wait(jobs: list[dict[str, Any]], elapsed: float) -> None:
        pass

    left = _poll(
        lambda: [job for job in running_jobs(bedrock) if job["jobName"] != ours],
        lambda jobs: not jobs,
        timeout=timeout,
        max_interval=max_interval,
        on_wait=on_wait,
    )
    if left:
        raise QuotaExceededError(
            f"import job {', '.join(job['jobName'] for job in left)} still running after {timeout:.0f} s; "
            "Bedrock runs one import job at a time"
        )


def import_identity(cfg: ImportConfig, files: Iterable[tuple[str, str]]) -> str:
    """What makes two imports the same: the files' content (``(name, digest)`` pairs: a sha256, or for
    a model in S3 without a manifest, its object's ETag and size) and every setting that reaches the
    job, the S3 prefix it reads included."""
    payload = {
        "files": [list(pair) for pair in files],
        "config": cfg.config_hash(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def job_request(cfg: ImportConfig, job_name: str) -> dict[str, Any]:
    """The CreateModelImportJob request, with an idempotency token derived from the request itself."""
    request: dict[str, Any] = {
        "jobName": job_name,
        "importedModelName": cfg.model_name,
        "roleArn": cfg.role_arn,
        # where the files are: the upload's prefix, or a model's own prefix in S3 (set by import_model)
        "modelDataSource": {"s3DataSource": {"s3Uri": cfg.upload_uri}},
    }
    if cfg.job_tags:
        request["jobTags"] = [{"key": k, "value": v} for k, v in cfg.job_tags.items()]
    if cfg.model_tags:
        request["importedModelTags"] = [{"key": k, "value": v} for k, v in cfg.model_tags.items()]
    if cfg.vpc is not None:
        request["vpcConfig"] = cfg.vpc.request()
    if cfg.kms_key_id:
        request["importedModelKmsKeyId"] = cfg.kms_key_id
    request["clientRequestToken"] = client_token(request)[:64]
    return request


def failure_message(bedrock: Any, job_arn: str) -> str:
    """Why a failed import job failed, as Bedrock says."""
    with translate_client_errors("GetModelImportJob"):
        job = bedrock.get_model_import_job(jobIdentifier=job_arn)
    return str(job.get("failureMessage") or "no reason given")
