"""The Bedrock control plane for Custom Model Import: jobs and imported models.

Each method takes the operation's input members (already checked against botocore's shapes) and
returns ``(status, body)``, or raises :class:`ServiceError` with the service's exception name.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bedrock_ft.local._config import LocalBedrockConfig
from bedrock_ft.local._errors import ServiceError
from bedrock_ft.local._jobs import ImportFailed, run_import
from bedrock_ft.local._store import JobRecord, ModelRecord, Store, new_id, now

__all__ = ["ControlPlane"]

log = logging.getLogger("bedrock_ft.local")

Result = tuple[int, dict[str, Any]]


class ControlPlane:
    def __init__(
        self,
        store: Store,
        config: LocalBedrockConfig,
        s3_client: Callable[[], Any],
        on_delete: Callable[[str], None],
    ) -> None:
        self.store = store
        self.config = config
        self._s3 = s3_client
        self._on_delete = on_delete
        self._threads: list[threading.Thread] = []

    # --- ARNs --------------------------------------------------------------------------------------

    def _arn(self, kind: str, ident: str) -> str:
        return f"arn:aws:bedrock:{self.config.region}:{self.config.account_id}:{kind}/{ident}"

    def _job(self, identifier: str) -> JobRecord:
        with self.store.lock:
            for job in self.store.jobs.values():
                if identifier in (job.arn, job.name):
                    return job
        raise ServiceError("ResourceNotFoundException", f"The model import job {identifier} was not found.")

    def model(self, identifier: str) -> ModelRecord:
        with self.store.lock:
            for model in self.store.models.values():
                if identifier in (model.arn, model.name):
                    return model
        raise ServiceError("ResourceNotFoundException", f"The imported model {identifier} was not found.")

    # --- operations ----------------------------------------------------------------------------------

    def create_model_import_job(self, params: dict[str, Any]) -> Result:
        token = params.get("clientRequestToken")
        s3_uri = params["modelDataSource"].get("s3DataSource", {}).get("s3Uri")
        if not s3_uri:
            raise ServiceError("ValidationException", "modelDataSource.s3DataSource.s3Uri is required.")
        with self.store.lock:
            existing = self._idempotent(token, params)
            if existing is not None:
                return 201, {"jobArn": existing}
            self._check_names(params["jobName"], params["importedModelName"])
            self._check_quotas()
            # The source is not read here: as on Bedrock (AWS's samples), a bucket or prefix that doesn't
            # exist, or that the role can't read, is accepted, and the job ends Failed saying so.
            job_id, model_id = new_id(), new_id()
            stamp = now()
            job = JobRecord(
                id=job_id,
                arn=self._arn("model-import-job", job_id),
                name=params["jobName"],
                model_name=params["importedModelName"],
                role_arn=params["roleArn"],
                s3_uri=s3_uri,
                status="InProgress",
                creation_time=stamp,
                last_modified_time=stamp,
                request=params,
                client_token=token,
                model_arn=self._arn("imported-model", model_id),
            )
            self.store.save_job(job)
        thread = threading.Thread(target=self._run, args=(job,), name=f"import-{job_id}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return 201, {"jobArn": job.arn}

    def _idempotent(self, token: str | None, params: dict[str, Any]) -> str | None:
        """The job a repeated clientRequestToken already created, if the request is the same."""
        if not token:
            return None
        for job in self.store.jobs.values():
            if job.client_token == token:
                if job.request != params:
                    raise ServiceError(
                        "ConflictException",
                        f"The clientRequestToken {token} was already used with different parameters.",
                    )
                return job.arn
        return None

    def _check_names(self, job_name: str, model_name: str) -> None:
        if any(job.name == job_name for job in self.store.jobs.values()):
            raise ServiceError("ConflictException", f"A model import job named {job_name} already exists.")
        taken = {model.name for model in self.store.models.values()} | {
            job.model_name for job in self.store.jobs.values() if job.status == "InProgress"
        }
        if model_name in taken:
            raise ServiceError("ConflictException", f"An imported model named {model_name} already exists.")

    def _check_quotas(self) -> None:
        running = sum(job.status == "InProgress" for job in self.store.jobs.values())
        if running >= self.config.max_concurrent_import_jobs:
            raise ServiceError(
                "ServiceQuotaExceededException",
                f"You have reached the limit of {self.config.max_concurrent_import_jobs} concurrent model "
                "import job(s). Wait for the running job to finish.",
            )
        if len(self.store.models) + running >= self.config.max_imported_models:
            raise ServiceError(
                "ServiceQuotaExceededException",
                f"You have reached the limit of {self.config.max_imported_models} imported models. "
                "Delete an imported model first.",
            )

    def _run(self, job: JobRecord) -> None:
        try:
            run_import(self.store, job, self._s3(), legacy_format=self.config.legacy_invoke_format)
        except ImportFailed as exc:
            self._finish(job, "Failed", str(exc))
        except Exception as exc:
            log.exception("import job %s failed", job.id)
            self._finish(job, "Failed", f"Internal error while importing: {type(exc).__name__}: {exc}")
        else:
            self._finish(job, "Completed", None)

    def _finish(self, job: JobRecord, status: str, message: str | None) -> None:
        with self.store.lock:
            job.status = status
            job.failure_message = message
            job.end_time = job.last_modified_time = now()
            self.store.save_job(job)

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def get_model_import_job(self, params: dict[str, Any]) -> Result:
        job = self._job(params["jobIdentifier"])
        body: dict[str, Any] = {
            "jobArn": job.arn,
            "jobName": job.name,
            "importedModelName": job.model_name,
            "roleArn": job.role_arn,
            "modelDataSource": {"s3DataSource": {"s3Uri": job.s3_uri}},
            "status": job.status,
            "creationTime": job.creation_time,
            "lastModifiedTime": job.last_modified_time,
        }
        if job.status == "Completed":
            body["importedModelArn"] = job.model_arn
        if job.end_time:
            body["endTime"] = job.end_time
        if job.failure_message:
            body["failureMessage"] = job.failure_message
        for key in ("vpcConfig",):
            if key in job.request:
                body[key] = job.request[key]
        if "importedModelKmsKeyId" in job.request:
            body["importedModelKmsKeyArn"] = job.request["importedModelKmsKeyId"]
        return 200, body

    def list_model_import_jobs(self, params: dict[str, Any]) -> Result:
        with self.store.lock:
            jobs = list(self.store.jobs.values())
        if "statusEquals" in params:
            jobs = [job for job in jobs if job.status == params["statusEquals"]]
        if "nameContains" in params:
            jobs = [job for job in jobs if params["nameContains"] in job.name]
        jobs = _time_filter(jobs, params)
        page, token = _page(jobs, params)
        summaries = []
        for job in page:
            summary: dict[str, Any] = {
                "jobArn": job.arn,
                "jobName": job.name,
                "status": job.status,
                "creationTime": job.creation_time,
                "lastModifiedTime": job.last_modified_time,
                "importedModelName": job.model_name,
            }
            if job.end_time:
                summary["endTime"] = job.end_time
            if job.status == "Completed":
                summary["importedModelArn"] = job.model_arn
            summaries.append(summary)
        return 200, {"modelImportJobSummaries": summaries, **({"nextToken": token} if token else {})}

    def get_imported_model(self, params: dict[str, Any]) -> Result:
        model = self.model(params["modelIdentifier"])
        return 200, {
            "modelArn": model.arn,
            "modelName": model.name,
            "jobName": model.job_name,
            "jobArn": model.job_arn,
            "modelDataSource": {"s3DataSource": {"s3Uri": model.s3_uri}},
            "creationTime": model.creation_time,
            "modelArchitecture": model.architecture,
            "instructSupported": model.instruct_supported,
            "customModelUnits": {
                "customModelUnitsPerModelCopy": model.custom_model_units,
                "customModelUnitsVersion": "v1.0",
            },
        }

    def list_imported_models(self, params: dict[str, Any]) -> Result:
        with self.store.lock:
            models = list(self.store.models.values())
        if "nameContains" in params:
            models = [model for model in models if params["nameContains"] in model.name]
        models = _time_filter(models, params)
        page, token = _page(models, params)
        summaries = [
            {
                "modelArn": model.arn,
                "modelName": model.name,
                "creationTime": model.creation_time,
                "instructSupported": model.instruct_supported,
                "modelArchitecture": model.architecture,
            }
            for model in page
        ]
        return 200, {"modelSummaries": summaries, **({"nextToken": token} if token else {})}

    def delete_imported_model(self, params: dict[str, Any]) -> Result:
        model = self.model(params["modelIdentifier"])
        self._on_delete(model.id)
        self.store.delete_model(model.id)
        return 200, {}


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _time_filter(items: list[Any], params: dict[str, Any]) -> list[Any]:
    if "creationTimeAfter" in params:
        after = _when(params["creationTimeAfter"])
        items = [item for item in items if _when(item.creation_time) > after]
    if "creationTimeBefore" in params:
        before = _when(params["creationTimeBefore"])
        items = [item for item in items if _when(item.creation_time) < before]
    return items


def _page(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], str | None]:
    descending = params.get("sortOrder", "Descending") == "Descending"
    items = sorted(items, key=lambda item: (item.creation_time, item.id), reverse=descending)
    start = 0
    if "nextToken" in params:
        try:
            start = int(base64.urlsafe_b64decode(params["nextToken"].encode()).decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ServiceError("ValidationException", "The nextToken is not valid.") from None
    size = int(params.get("maxResults", 1000))
    page = items[start : start + size]
    more = start + size < len(items)
    token = base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else None
    return page, token
