"""BedrockImporter: preflight, upload and the import job (the lifecycle is :class:`ImportedModels`).

A model already in S3 is checked from its small files and headers and imported from where it is
(``_s3_model``).

The same code runs against AWS and against ``bedrock_ft.local``; only the endpoints differ
(``ImportConfig.aws`` or the ``AWS_ENDPOINT_URL_*`` variables). docs/importing.md has the details.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Any, TypeVar

from bedrock_ft.artifacts import MANIFEST_NAME, ImportedModel, ModelArtifact, UploadSummary
from bedrock_ft.aws import AwsConfig
from bedrock_ft.errors import (
    ArtifactError,
    BedrockFTError,
    ConflictError,
    QuotaExceededError,
    translate_client_errors,
)
from bedrock_ft.importing import _jobs, _s3_model, _upload
from bedrock_ft.importing._chat_facts import model_chat_facts
from bedrock_ft.importing._config import ImportConfig, missing_s3_uri
from bedrock_ft.importing._cost import CostEstimate
from bedrock_ft.importing._lifecycle import ImportedModels, overlap, validate_params
from bedrock_ft.progress import OnBytes, Progress, quiet, show_bar

__all__ = ["BedrockImporter", "resolve_model"]

E = TypeVar("E", bound=BedrockFTError)


class BedrockImporter:
    """Import merged models into Bedrock with Custom Model Import.

    ``import_model(model)`` takes a :class:`~bedrock_ft.artifacts.ModelArtifact`, its manifest or the
    merge's output directory, a bare model directory, or the ``s3://`` prefix of a model already in S3
    (imported from there, with nothing uploaded). ``progress`` receives one line per step;
    ``progress_bar`` shows the upload in bytes (None: when stderr is a terminal); ``on_upload(name, n)``
    is told of every ``n`` bytes sent for file ``name``. :attr:`models` manages imported models.
    """

    def __init__(
        self,
        config: ImportConfig | None = None,
        *,
        aws: AwsConfig | None = None,
        progress: Progress | None = None,
        progress_bar: bool | None = None,
        on_upload: OnBytes | None = None,
    ) -> None:
        self.config = config
        self.aws = aws or (config.aws if config is not None else AwsConfig())
        self._say: Progress = progress or quiet
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

        ``model`` may also be the ``s3://bucket/prefix/`` of a model already in S3 (or a ModelArtifact
        whose ``model_dir`` is one): it is checked from its small files and .safetensors headers and
        imported from where it is, with nothing uploaded (``upload`` is None).

        Re-running is safe: files already in S3 are not sent again, a job still running is waited for,
        and a finished import of the same files with the same settings is returned as it is.
        """
        cfg = self._need_config()
        artifact, where = resolve_model(model)
        if isinstance(where, str):
            cfg, identity, template = _s3_model.check_s3_model(
                self._client("s3"), cfg, artifact, where, say=self._say
            )
            files: list[_upload.LocalFile] | None = None
        else:
            files = self._check_local(cfg, artifact, where)
            identity = _jobs.import_identity(cfg, [(f.name, f.sha256) for f in files])
            template = model_chat_facts(artifact, where)
        say = self._say
        bedrock = self._client("bedrock")

        earlier = self._earlier_jobs(bedrock, cfg, identity)
        done = self._earlier_import(earlier, cfg)
        if done is not None:
            say(f"already imported by job {done.job_name}: {done.model_arn}")
            return done.model_copy(update=template)
        running = next((job for job in earlier if job["status"] == "InProgress"), None)
        if running is not None:
            say(f"import job {running['jobName']} of this model is already running")
            if not cfg.wait:
                return self._in_progress(running["jobArn"], running["jobName"], cfg, template, upload=None)
            return self._finish(bedrock, running["jobArn"], cfg, template, upload=None)
        job_name = self._next_job_name(bedrock, cfg, identity, earlier)
        request = _jobs.job_request(cfg, job_name)
        validate_params("CreateModelImportJob", request)  # before anything is uploaded

        self._check_name_free(bedrock, cfg, writing=files is not None)
        upload = None
        if files is not None:
            upload = _upload.upload_model(
                self._client("s3"), cfg, files, say=say, progress_bar=show_bar(self._progress_bar),
                on_bytes=self._on_upload,
            )  # fmt: skip
        _jobs.wait_until_idle(
            bedrock, on_busy=cfg.on_busy, timeout=cfg.timeout, max_interval=cfg.poll_interval, say=say
        )
        say(f"creating import job {job_name} for model {cfg.model_name}")
        job_arn = self._create_job(bedrock, request, cfg)
        if not cfg.wait:
            return self._in_progress(job_arn, job_name, cfg, template, upload=upload)
        return self._finish(bedrock, job_arn, cfg, template, upload=upload)

    def _check_local(
        self, cfg: ImportConfig, artifact: ModelArtifact | None, model_dir: Path
    ) -> list[_upload.LocalFile]:
        """Preflight a local model directory and hash its files (checked against the artifact's list)."""
        if cfg.s3_uri is None:  # a local model is uploaded: say so before any work
            raise missing_s3_uri()
        self._say(f"preflight: checking {model_dir} against the Custom Model Import rules")
        from bedrock_ft.preflight import check_model_dir

        check_model_dir(model_dir).raise_for_errors()
        self._say("hashing the model's files")
        return _upload.hash_files(model_dir, artifact.files if artifact else None)

    def _in_progress(
        self,
        job_arn: str,
        job_name: str,
        cfg: ImportConfig,
        template: dict[str, Any],
        *,
        upload: UploadSummary | None,
    ) -> ImportedModel:
        return ImportedModel(
            model_name=cfg.model_name,
            job_arn=job_arn,
            job_name=job_name,
            status="InProgress",
            s3_uri=cfg.upload_uri,
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
            why = f"failed ({last['jobName']}: {_jobs.failure_message(bedrock, last['jobArn'])})"
        else:
            why = f"made a model that no longer exists ({last['jobName']})"
        stem = _jobs.derived_job_name(cfg.model_name, identity, 1)
        attempts = [1 if j["jobName"] == stem else int(j["jobName"][len(stem) + 2 :]) for j in earlier]
        name = _jobs.derived_job_name(cfg.model_name, identity, max(attempts) + 1)
        self._say(f"an earlier import of this model {why}; importing again as job {name}")
        return name

    def _check_name_free(self, bedrock: Any, cfg: ImportConfig, *, writing: bool) -> None:
        """The model name is not taken, and no running job is importing that name, or (``writing``: an
        upload is to come) reading our prefix."""
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
            if not writing:
                continue
            with translate_client_errors("GetModelImportJob"):
                details = bedrock.get_model_import_job(jobIdentifier=job["jobArn"])
            source = (details.get("modelDataSource") or {}).get("s3DataSource", {}).get("s3Uri", "")
            if source and overlap(source, cfg.upload_uri):
                raise ConflictError(
                    f"import job {job['jobName']} is reading {source} right now; wait for it before changing "
                    f"{cfg.upload_uri}"
                )

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
        upload: UploadSummary | None,
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

    # --- lifecycle (see ImportedModels) ------------------------------------------------------------

    @property
    def models(self) -> ImportedModels:
        """The account's imported models (get, list, delete, cost), through the same AWS settings."""
        return ImportedModels(self.aws, progress=self._say)

    def get(self, identifier: str) -> ImportedModel:
        """An imported model, by name or ARN (:meth:`ImportedModels.get`)."""
        return self.models.get(identifier)

    def find_by_name(self, name: str) -> ImportedModel | None:
        """The imported model called ``name``, or None (:meth:`ImportedModels.find`)."""
        return self.models.find(name)

    def chat_facts(self, model: ImportedModel) -> dict[str, Any]:
        """Its chat template and special tokens, from its files (:meth:`ImportedModels.chat_facts`)."""
        return self.models.chat_facts(model)

    def list_imported_models(self, name_contains: str | None = None) -> list[ImportedModel]:
        """Every imported model, newest first (:meth:`ImportedModels.list`)."""
        return self.models.list(name_contains)

    def delete(self, identifier: str, *, delete_artifacts: bool = False) -> list[str]:
        """Delete an imported model, and on request its S3 files (:meth:`ImportedModels.delete`)."""
        return self.models.delete(identifier, delete_artifacts=delete_artifacts)

    def estimate_cost(
        self,
        model: ImportedModel | str,
        *,
        price_per_cmu_minute: float,
        active_minutes: float,
        copies: int = 1,
    ) -> CostEstimate:
        """What ``active_minutes`` of serving cost (:meth:`ImportedModels.estimate_cost`)."""
        return self.models.estimate_cost(
            model, price_per_cmu_minute=price_per_cmu_minute, active_minutes=active_minutes, copies=copies
        )


# --- helpers --------------------------------------------------------------------------------------------


def resolve_model(model: ModelArtifact | str | Path) -> tuple[ModelArtifact | None, Path | str]:
    """(artifact or None, model directory) from an artifact, a merge's output directory or manifest, the
    merge's ``model/`` directory, or a bare model directory; the directory is an ``s3://`` URI (a str)
    for a model in S3: the URI itself, or an artifact whose ``model_dir`` is one."""
    if isinstance(model, str) and model.startswith("s3://"):
        return None, model
    if isinstance(model, PurePath) and model.as_posix().startswith("s3:/"):
        raise ArtifactError(f"{model}: give an S3 model's URI as a str (a Path turns s3:// into s3:/)")
    try:
        artifact = ModelArtifact.from_input(model)
    except ArtifactError as exc:
        raise ArtifactError(
            f"{exc} (give a merge's output directory, a model directory or an s3:// prefix)"
        ) from None
    if artifact is not None:
        if artifact.model_dir.startswith("s3://"):
            return artifact, artifact.model_dir
        return artifact, Path(artifact.model_dir)
    path = Path(os.fspath(model)).expanduser()  # type: ignore[arg-type]
    parent_manifest = path.parent / MANIFEST_NAME
    if parent_manifest.is_file():  # the merge's model/ directory itself
        try:
            found: ModelArtifact | None = ModelArtifact.read(parent_manifest)
        except ArtifactError:
            found = None
        if found is not None and Path(found.model_dir).resolve() == path.resolve():
            return found, path
    return None, path


def _with_aws(error: E, cause: BedrockFTError) -> E:
    """``error``, keeping what the service said (``.aws``) from the error it replaces."""
    error.aws = cause.aws
    return error


_QUOTA_HINT = (
    " Delete an imported model you no longer need (bedrock-ft models delete NAME), or ask AWS for a "
    "higher quota."
)
