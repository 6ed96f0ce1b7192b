"""BedrockImporter: preflight, upload, import job, and the imported model's lifecycle.

The same code runs against AWS and against ``bedrock_ft.local``; only the endpoints differ
(``ImportConfig.aws`` or the ``AWS_ENDPOINT_URL_*`` variables). docs/importing.md has the details.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from bedrock_ft.artifacts import MANIFEST_NAME, ImportedModel, ModelArtifact
from bedrock_ft.aws import AwsConfig
from bedrock_ft.bedrock import _jobs, _upload
from bedrock_ft.bedrock._cost import CostEstimate, estimate_cost
from bedrock_ft.bedrock._tokenizer import chat_facts
from bedrock_ft.bedrock.config import ImportConfig, split_s3_uri
from bedrock_ft.errors import (
    AccessDeniedError,
    ArtifactError,
    BedrockFTError,
    ConflictError,
    QuotaExceededError,
    RequestValidationError,
    ResourceNotFoundError,
    translate_client_errors,
)

__all__ = ["BedrockImporter", "resolve_model"]

Say = Callable[[str], None]
E = TypeVar("E", bound=BedrockFTError)
OnBytes = Callable[[str, int], None]


class BedrockImporter:
    """Import merged models into Bedrock with Custom Model Import, and manage imported models.

    ``progress`` receives one line per step; ``progress_bar`` shows the upload in bytes (rich);
    ``on_upload(name, n)`` is told of every ``n`` bytes sent for file ``name``.
    """

    def __init__(
        self,
        config: ImportConfig | None = None,
        *,
        aws: AwsConfig | None = None,
        progress: Say | None = None,
        progress_bar: bool = False,
        on_upload: OnBytes | None = None,
    ) -> None:
        self.config = config
        self.aws = aws or (config.aws if config is not None else AwsConfig())
        self._say: Say = progress or (lambda message: None)
        self._progress_bar = progress_bar
        self._on_upload = on_upload

    # --- clients ---------------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        if service == "s3" and self.config is not None:
            from botocore.config import Config

            # one pooled connection per parallel request
            pool = Config(max_pool_connections=max(10, self.config.concurrency + 2))
            return self.aws.client("s3", config=pool)
        return self.aws.client(service)

    def _need_config(self) -> ImportConfig:
        if self.config is None:
            raise ArtifactError("BedrockImporter needs an ImportConfig to import (lifecycle calls don't)")
        return self.config

    # --- import ------------------------------------------------------------------------------------

    def import_model(self, model: ModelArtifact | str | Path) -> ImportedModel:
        """Preflight, upload what S3 lacks, run the import job, and return the imported model.

        Re-running is safe: files already in S3 are not sent again, a job still running is waited for,
        and a finished import of the same files with the same settings is returned as it is.
        """
        cfg = self._need_config()
        artifact, model_dir = resolve_model(model)
        say = self._say

        say(f"preflight: checking {model_dir} against the Custom Model Import rules")
        from bedrock_ft.preflight import check_model_dir

        check_model_dir(model_dir).raise_for_errors()
        say("hashing the model's files")
        files = _upload.hash_files(model_dir, artifact.files if artifact else None)
        identity = _identity(cfg, files)
        template = _chat_facts(artifact, model_dir)
        bedrock, s3 = self._client("bedrock"), self._client("s3")

        earlier = self._earlier_jobs(bedrock, cfg, identity)
        done = self._earlier_import(earlier, cfg)
        if done is not None:
            say(f"already imported by job {done.job_name}: {done.model_arn}")
            return done.model_copy(update=template)
        running = next((job for job in earlier if job["status"] == "InProgress"), None)
        if running is not None:
            say(f"import job {running['jobName']} of this model is already running")
            if not cfg.wait:
                return self._in_progress(running["jobArn"], running["jobName"], cfg, template, upload={})
            return self._finish(bedrock, running["jobArn"], cfg, template, upload={})
        job_name = self._next_job_name(bedrock, cfg, identity, earlier)
        request = _request(cfg, job_name)
        _validate_params("CreateModelImportJob", request)  # before anything is uploaded

        self._check_name_free(bedrock, cfg)
        upload = self._upload(s3, cfg, files)
        _jobs.wait_until_idle(
            bedrock, on_busy=cfg.on_busy, timeout=cfg.timeout, max_interval=cfg.poll_interval, say=say
        )
        say(f"creating import job {job_name} for model {cfg.model_name}")
        job_arn = self._create_job(bedrock, request, cfg)
        if not cfg.wait:
            return self._in_progress(job_arn, job_name, cfg, template, upload=upload)
        return self._finish(bedrock, job_arn, cfg, template, upload=upload)

    def _in_progress(
        self,
        job_arn: str,
        job_name: str,
        cfg: ImportConfig,
        template: dict[str, Any],
        *,
        upload: dict[str, Any],
    ) -> ImportedModel:
        return ImportedModel(
            model_name=cfg.model_name,
            job_arn=job_arn,
            job_name=job_name,
            status="InProgress",
            s3_uri=cfg.s3_uri,
            region=self.aws.resolved_region(),
            endpoint_url=self.aws.endpoint_for("bedrock"),
            **template,
            upload=upload,
            config_hash=cfg.config_hash(),
        )

    def wait(self, job: str) -> ImportedModel:
        """Wait for an import job (ARN or name) to end and return its model (``wait=False`` imports)."""
        cfg = self.config
        timeout = cfg.timeout if cfg else 4 * 3600.0
        interval = cfg.poll_interval if cfg else 30.0
        bedrock = self._client("bedrock")
        finished = _jobs.wait_for_job(bedrock, job, timeout=timeout, max_interval=interval, say=self._say)
        return self.get(finished["importedModelArn"]).model_copy(
            update={"job_arn": finished["jobArn"], "job_name": finished["jobName"]}
        )

    def _earlier_jobs(self, bedrock: Any, cfg: ImportConfig, identity: str) -> list[dict[str, Any]]:
        """Earlier jobs of this same import (same files and settings), oldest first.

        Only a derived job name carries the import's identity. A job with a name given in the config
        could have imported other files: it is never taken for this import (see _next_job_name).
        """
        if cfg.job_name is not None:
            return []
        return _jobs.jobs_named(bedrock, _jobs.derived_job_name(cfg.model_name, identity, 1))

    def _earlier_import(self, earlier: list[dict[str, Any]], cfg: ImportConfig) -> ImportedModel | None:
        """The imported model a Completed earlier job of this import made, if it still exists."""
        if not any(job["status"] == "Completed" for job in earlier):
            return None
        model = self.find_by_name(cfg.model_name)
        if model is not None and any(model.job_name == job["jobName"] for job in earlier):
            return model.model_copy(update={"config_hash": cfg.config_hash()})
        return None

    def _next_job_name(
        self, bedrock: Any, cfg: ImportConfig, identity: str, earlier: list[dict[str, Any]]
    ) -> str:
        """The name of the job to create. Earlier jobs of this import all failed, or made a model that
        has since been deleted: a token can't be reused for a new job, so the next is ``-r<N>``."""
        if cfg.job_name is not None:
            taken = [j for j in _jobs.jobs_named(bedrock, cfg.job_name) if j["jobName"] == cfg.job_name]
            if taken:
                raise ConflictError(
                    f"an import job named {cfg.job_name} already exists ({taken[-1]['status']}); give "
                    "another job_name, or leave it unset: a derived name lets a re-run find its own job"
                )
            return cfg.job_name
        if not earlier:
            return _jobs.derived_job_name(cfg.model_name, identity, 1)
        last = earlier[-1]
        if last["status"] == "Failed":
            why = f"failed ({last['jobName']}: {_failure(bedrock, last['jobArn'])})"
        else:
            why = f"made a model that no longer exists ({last['jobName']})"
        stem = _jobs.derived_job_name(cfg.model_name, identity, 1)
        attempts = [1 if j["jobName"] == stem else int(j["jobName"][len(stem) + 2 :]) for j in earlier]
        name = _jobs.derived_job_name(cfg.model_name, identity, max(attempts) + 1)
        self._say(f"an earlier import of this model {why}; importing again as job {name}")
        return name

    def _check_name_free(self, bedrock: Any, cfg: ImportConfig) -> None:
        """The model name is not taken, and no running job is importing that name or reading our prefix."""
        name = cfg.model_name
        existing = self.find_by_name(name)
        if existing is not None:
            raise ConflictError(
                f"an imported model named {name!r} already exists ({existing.model_arn}, imported by job "
                f"{existing.job_name} from {existing.s3_uri}); choose another model_name, or delete it "
                f"first: bedrock-ft models delete {name}"
            )
        for job in _jobs.running_jobs(bedrock):
            if job.get("importedModelName") == name:
                raise ConflictError(
                    f"import job {job['jobName']} is already importing a model named {name!r}; wait for it, "
                    "or choose another model_name"
                )
            with translate_client_errors("GetModelImportJob"):
                details = bedrock.get_model_import_job(jobIdentifier=job["jobArn"])
            source = (details.get("modelDataSource") or {}).get("s3DataSource", {}).get("s3Uri", "")
            if source and _overlap(source, cfg.s3_uri):
                raise ConflictError(
                    f"import job {job['jobName']} is reading {source} right now; wait for it before changing "
                    f"{cfg.s3_uri}"
                )

    def _upload(self, s3: Any, cfg: ImportConfig, files: list[_upload.LocalFile]) -> dict[str, Any]:
        say = self._say
        started = datetime.now(timezone.utc)
        with translate_client_errors():
            _upload.check_bucket(s3, cfg.bucket)
            remote = _upload.remote_objects(s3, cfg.bucket, cfg.prefix, workers=cfg.concurrency)
            plan = _upload.plan_upload(
                files, remote, cfg.prefix, cfg.s3_uri, overwrite=cfg.overwrite, kms_key=cfg.sse_kms_key_id
            )
            aborted = _upload.abort_stale_uploads(
                s3, cfg.bucket, cfg.prefix, keys={cfg.prefix + f.name for f in plan.send}, before=started
            )
            if aborted:
                say(f"aborted {aborted} multipart upload(s) an interrupted run left behind")
            if plan.delete:
                say(f"overwrite: deleting {len(plan.delete)} object(s) that are not part of this model")
                _upload.delete_keys(s3, cfg.bucket, plan.delete)
            to_send = sum(f.size for f in plan.send)
            say(
                f"uploading {len(plan.send)} file(s), {to_send / 1e6:,.1f} MB, to {cfg.s3_uri}"
                + (f" ({len(plan.skip)} already there)" if plan.skip else "")
            )
            seconds = 0.0
            if plan.send:
                with _progress_bar(self._progress_bar, to_send, self._on_upload) as on_bytes:
                    seconds = _upload.send(
                        s3,
                        cfg.bucket,
                        cfg.prefix,
                        plan.send,
                        concurrency=cfg.concurrency,
                        chunk_bytes=cfg.chunk_bytes,
                        threshold_bytes=cfg.threshold_bytes,
                        extra_args=_extra_args(cfg),
                        on_bytes=on_bytes,
                    )
            after = _upload.remote_objects(s3, cfg.bucket, cfg.prefix, workers=cfg.concurrency)
        bad = [
            f.name
            for f in files
            if (obj := after.get(cfg.prefix + f.name)) is None or (obj.size, obj.sha256) != (f.size, f.sha256)
        ]
        if bad:
            raise ConflictError(
                f"after the upload, {cfg.s3_uri}{bad[0]} is missing or differs (another writer?); run again"
            )
        return {
            "sent": [f.name for f in plan.send],
            "skipped": [f.name for f in plan.skip],
            "deleted": [key[len(cfg.prefix) :] for key in plan.delete],
            "bytes_sent": to_send,
            "seconds": round(seconds, 3),
            "mb_per_s": round(to_send / 1e6 / seconds, 1) if seconds > 0 else None,
            "concurrency": cfg.concurrency,
        }

    def _create_job(self, bedrock: Any, request: dict[str, Any], cfg: ImportConfig) -> str:
        while True:
            try:
                with translate_client_errors("CreateModelImportJob"):
                    return str(bedrock.create_model_import_job(**request)["jobArn"])
            except QuotaExceededError as exc:
                busy = [job for job in _jobs.running_jobs(bedrock) if job["jobName"] != request["jobName"]]
                if busy and cfg.on_busy == "wait":  # another job started in between
                    _jobs.wait_until_idle(
                        bedrock, on_busy="wait", timeout=cfg.timeout, max_interval=cfg.poll_interval,
                        say=self._say,
                    )  # fmt: skip
                    continue
                raise _with_aws(QuotaExceededError(f"{exc}{'' if busy else _QUOTA_HINT}"), exc) from exc
            except ConflictError as exc:
                raise _with_aws(
                    ConflictError(
                        f"{exc} (model {cfg.model_name!r}, job {request['jobName']!r}); choose another name, "
                        "or delete the existing model"
                    ),
                    exc,
                ) from exc

    def _finish(
        self,
        bedrock: Any,
        job_arn: str,
        cfg: ImportConfig,
        template: dict[str, Any],
        *,
        upload: dict[str, Any],
    ) -> ImportedModel:
        job = _jobs.wait_for_job(
            bedrock, job_arn, timeout=cfg.timeout, max_interval=cfg.poll_interval, say=self._say
        )
        model = self.get(job["importedModelArn"])
        self._say(f"imported: {model.model_arn} ({model.cmus_per_copy} CMU per copy)")
        return model.model_copy(
            update={
                "job_arn": job["jobArn"],
                "job_name": job["jobName"],
                **template,
                "upload": upload,
                "config_hash": cfg.config_hash(),
            }
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    def get(self, identifier: str) -> ImportedModel:
        """An imported model, by name or ARN (:class:`ResourceNotFoundError` when there is none)."""
        bedrock = self._client("bedrock")
        _validate_identifier("GetImportedModel", identifier)
        with translate_client_errors("GetImportedModel"):
            response = bedrock.get_imported_model(modelIdentifier=identifier)
        return self._imported(response)

    def chat_facts(self, model: ImportedModel) -> dict[str, Any]:
        """The chat template, special tokens and BOS handling of an imported model, read from the
        tokenizer files in the S3 prefix it was imported from (needs ``s3:GetObject`` there)."""
        if not model.s3_uri:
            return {}
        bucket, prefix = split_s3_uri(model.s3_uri)
        s3 = self._client("s3")

        def read(name: str) -> bytes | None:
            try:
                with translate_client_errors("GetObject"):
                    body: bytes = s3.get_object(Bucket=bucket, Key=f"{prefix}{name}")["Body"].read()
                    return body
            except ResourceNotFoundError:
                return None
            except AccessDeniedError:  # S3 says 403 for a missing key unless s3:ListBucket is granted
                if name == "tokenizer_config.json":
                    raise
                return None

        return chat_facts(read)

    def find_by_name(self, name: str) -> ImportedModel | None:
        """The imported model called ``name``, or None."""
        try:
            return self.get(name)
        except ResourceNotFoundError:
            return None

    def list_imported_models(self, name_contains: str | None = None) -> list[ImportedModel]:
        """Every imported model (newest first), optionally those whose name contains ``name_contains``."""
        bedrock = self._client("bedrock")
        kwargs: dict[str, Any] = {"nameContains": name_contains} if name_contains else {}
        if kwargs:
            _validate_params("ListImportedModels", kwargs)
        summaries: list[dict[str, Any]] = []
        with translate_client_errors("ListImportedModels"):
            for page in bedrock.get_paginator("list_imported_models").paginate(**kwargs):
                summaries.extend(page.get("modelSummaries", []))
        return [
            ImportedModel(
                model_arn=s["modelArn"],
                model_name=s["modelName"],
                architecture=s.get("modelArchitecture"),
                instruct_supported=s.get("instructSupported"),
                creation_time=s.get("creationTime"),
                region=self.aws.resolved_region(),
                endpoint_url=self.aws.endpoint_for("bedrock"),
            )
            for s in summaries
        ]

    def delete(self, identifier: str, *, delete_artifacts: bool = False) -> list[str]:
        """Delete an imported model; with ``delete_artifacts`` also the S3 files it was imported from.

        Returns the S3 URIs deleted. Files under a prefix another imported model was imported from (the
        same prefix, a parent or a child) are kept.
        """
        model = self.get(identifier)
        others: list[str] = []
        if delete_artifacts and model.s3_uri:
            for other in self.list_imported_models():
                if other.model_arn == model.model_arn:
                    continue
                try:
                    source = self.get(other.model_arn or other.model_name).s3_uri
                except ResourceNotFoundError:  # deleted meanwhile
                    continue
                if source and _overlap(source, model.s3_uri):
                    others.append(other.model_name)
        bedrock = self._client("bedrock")
        self._say(f"deleting imported model {model.model_name} ({model.model_arn})")
        with translate_client_errors("DeleteImportedModel"):
            bedrock.delete_imported_model(modelIdentifier=model.model_arn)
        if not delete_artifacts or not model.s3_uri:
            return []
        if others:
            self._say(f"kept {model.s3_uri}: imported model(s) {', '.join(others)} came from it too")
            return []
        bucket, prefix = split_s3_uri(model.s3_uri)
        if not prefix:
            self._say(f"kept {model.s3_uri}: a whole bucket is never deleted")
            return []
        s3 = self._client("s3")
        with translate_client_errors():
            keys = list(_upload.remote_objects(s3, bucket, prefix))
            _upload.abort_stale_uploads(s3, bucket, prefix)
            _upload.delete_keys(s3, bucket, keys)
        self._say(f"deleted {len(keys)} object(s) under {model.s3_uri}")
        return [f"s3://{bucket}/{key}" for key in sorted(keys)]

    def estimate_cost(
        self,
        model: ImportedModel | str,
        *,
        price_per_cmu_minute: float,
        active_minutes: float,
        copies: int = 1,
    ) -> CostEstimate:
        """What ``active_minutes`` of serving cost: CMUs x copies x price per CMU-minute, billed in
        5-minute windows. The price varies by region: take it from the Bedrock pricing page."""
        if isinstance(model, str):
            model = self.get(model)
        if model.cmus_per_copy is None:
            model = self.get(model.model_arn or model.model_name)
        if model.cmus_per_copy is None:
            raise ArtifactError(
                f"Bedrock reports no Custom Model Units for {model.model_name}; is it imported?"
            )
        return estimate_cost(
            model.cmus_per_copy,
            price_per_cmu_minute=price_per_cmu_minute,
            active_minutes=active_minutes,
            copies=copies,
        )

    def _imported(self, response: dict[str, Any]) -> ImportedModel:
        from bedrock_ft.bedrock._formats import accepted_formats, architecture_of

        units = (response.get("customModelUnits") or {}).get("customModelUnitsPerModelCopy")
        model = ImportedModel(
            model_arn=response["modelArn"],
            model_name=response["modelName"],
            job_arn=response.get("jobArn"),
            job_name=response.get("jobName"),
            s3_uri=(response.get("modelDataSource") or {}).get("s3DataSource", {}).get("s3Uri"),
            creation_time=response.get("creationTime"),
            architecture=response.get("modelArchitecture"),
            instruct_supported=response.get("instructSupported"),
            cmus_per_copy=units,
            region=self.aws.resolved_region(),
            endpoint_url=self.aws.endpoint_for("bedrock"),
        )
        return model.model_copy(update={"api_formats": accepted_formats(model, architecture_of(model))})


# --- helpers --------------------------------------------------------------------------------------------


def resolve_model(model: ModelArtifact | str | Path) -> tuple[ModelArtifact | None, Path]:
    """(artifact or None, model directory) from an artifact, a merge's output dir or manifest, or a
    bare model directory."""
    if isinstance(model, ModelArtifact):
        return model, Path(model.model_dir)
    path = Path(os.fspath(model)).expanduser()
    if not path.exists():
        raise ArtifactError(
            f"{path}: no such file or directory (give a merge's output directory or a model directory)"
        )
    if path.is_file():
        artifact = ModelArtifact.read(path)
        return artifact, Path(artifact.model_dir)
    if (path / MANIFEST_NAME).is_file():
        artifact = ModelArtifact.read(path)
        return artifact, Path(artifact.model_dir)
    parent_manifest = path.parent / MANIFEST_NAME
    if parent_manifest.is_file():  # the merge's model/ directory itself
        try:
            found: ModelArtifact | None = ModelArtifact.read(parent_manifest)
        except ArtifactError:
            found = None
        if found is not None and Path(found.model_dir).resolve() == path.resolve():
            return found, path
    return None, path


def _identity(cfg: ImportConfig, files: list[_upload.LocalFile]) -> str:
    """What makes two imports the same: the files' content and every setting that reaches the job."""
    payload = {
        "files": [(f.name, f.sha256) for f in files],
        "config": cfg.config_hash(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _request(cfg: ImportConfig, job_name: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "jobName": job_name,
        "importedModelName": cfg.model_name,
        "roleArn": cfg.role_arn,
        "modelDataSource": {"s3DataSource": {"s3Uri": cfg.s3_uri}},
    }
    if cfg.job_tags:
        request["jobTags"] = [{"key": k, "value": v} for k, v in cfg.job_tags.items()]
    if cfg.model_tags:
        request["importedModelTags"] = [{"key": k, "value": v} for k, v in cfg.model_tags.items()]
    if cfg.vpc is not None:
        request["vpcConfig"] = cfg.vpc.request()
    if cfg.kms_key_id:
        request["importedModelKmsKeyId"] = cfg.kms_key_id
    request["clientRequestToken"] = _jobs.client_token(request)[:64]
    return request


def _validate_params(operation: str, params: dict[str, Any]) -> None:
    from bedrock_ft.shapes import input_errors

    errors = input_errors("bedrock", operation, params)
    if errors:
        raise RequestValidationError(f"{operation} would be refused: {'; '.join(errors)}")


def _validate_identifier(operation: str, identifier: str) -> None:
    _validate_params(operation, {"modelIdentifier": identifier})


def _overlap(a: str, b: str) -> bool:
    """Whether two S3 locations share objects: the same prefix, or one inside the other."""
    (bucket_a, prefix_a), (bucket_b, prefix_b) = split_s3_uri(a), split_s3_uri(b)
    return bucket_a == bucket_b and (prefix_a.startswith(prefix_b) or prefix_b.startswith(prefix_a))


def _with_aws(error: E, cause: BedrockFTError) -> E:
    """``error``, keeping what the service said (``.aws``) from the error it replaces."""
    error.aws = cause.aws
    return error


def _failure(bedrock: Any, job_arn: str) -> str:
    with translate_client_errors("GetModelImportJob"):
        job = bedrock.get_model_import_job(jobIdentifier=job_arn)
    return str(job.get("failureMessage") or "no reason given")


def _chat_facts(artifact: ModelArtifact | None, model_dir: Path) -> dict[str, Any]:
    """What a client needs to render chats as the model was trained (see :func:`chat_facts`); the
    merge's record of the template wins over tokenizer_config.json's."""

    def read(name: str) -> bytes | None:
        try:
            return (model_dir / name).read_bytes()
        except OSError:
            return None

    facts = chat_facts(read)
    if artifact is not None:
        facts["chat_template"] = artifact.chat_template
    return facts


def _extra_args(cfg: ImportConfig) -> dict[str, Any]:
    args: dict[str, Any] = {"ChecksumAlgorithm": cfg.checksum_algorithm}
    if cfg.sse_kms_key_id:
        args["ServerSideEncryption"] = "aws:kms"
        args["SSEKMSKeyId"] = cfg.sse_kms_key_id
    return args


_QUOTA_HINT = (
    " Delete an imported model you no longer need (bedrock-ft models delete NAME), or ask AWS for a "
    "higher quota."
)


@contextmanager
def _progress_bar(show: bool, total: int, callback: OnBytes | None) -> Iterator[OnBytes | None]:
    """A rich bar in bytes when asked for, plus the caller's own byte callback."""
    if not show:
        yield callback
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(TextColumn("upload"), *columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("upload", total=total)

        def on_bytes(name: str, n: int) -> None:
            bar.update(task, advance=n)
            if callback is not None:
                callback(name, n)

        yield on_bytes
