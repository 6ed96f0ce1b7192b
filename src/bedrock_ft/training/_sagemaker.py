"""backend='sagemaker': submit the training entrypoint as a SageMaker training job, watch it, fetch it.

Submission goes through the sagemaker SDK's ``ModelTrainer`` (``sagemaker.modules.train``), not the
PyTorch estimator: it puts the job's command in the request itself (``SourceCode.command``, run by the
SDK's driver script), writes outputs uncompressed (``OutputDataConfig(compression_type="NONE")``) and
takes checkpoint, spot and VPC settings as typed configs. The estimator hides the command in the image's
training toolkit, which the local SageMaker could not run as it is.

The job's code channel holds two files: ``train.json`` (this run's qlora and training sections, the
config file the entrypoint reads) and ``requirements.txt`` (bedrock-ft and the pinned training stack,
installed over the PyTorch image). Its ``dataset`` channel is the dataset artifact, uploaded once to a
content-addressed prefix under ``output_s3_uri``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft._io import atomic_write_text
from bedrock_ft.artifacts import AdapterArtifact, DatasetArtifact
from bedrock_ft.errors import ConfigError, TrainingError, translate_client_errors
from bedrock_ft.training._sagemaker_config import SageMakerConfig
from bedrock_ft.training._sm_watch import SageMakerJob, job_record

if TYPE_CHECKING:
    from bedrock_ft.aws import AwsConfig
    from bedrock_ft.progress import Progress
    from bedrock_ft.training._config import QLoRAConfig, TrainingConfig

__all__ = ["SageMakerJob", "run_on_sagemaker", "submit_job", "training_stack"]

CODE_FILE = "train.json"
DATASET_CHANNEL = "dataset"
STACK = ("transformers", "tokenizers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "safetensors")
_TELEMETRY_OFF = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def training_stack() -> list[str]:
    """The job's requirements: this bedrock-ft with its train extra, and the training stack pinned to the
    versions installed here (torch comes from the image)."""
    from importlib import metadata

    from bedrock_ft._version import __version__

    lines = [f"bedrock-ft[train]=={__version__}"]
    # the GPU speed-ups, where installed here: the job then runs the kernels a local run would
    # (nvidia-cudnn-frontend: cuDNN's varlen attention, which the defaults use where it's installed)
    for name in (*STACK, "liger-kernel", "nvidia-cudnn-frontend"):
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return lines


def is_local_endpoint(url: str | None) -> bool:
    from urllib.parse import urlparse

    host = urlparse(url).hostname if url else None
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def _quiet_config_loader() -> None:
    # Importing sagemaker prints "sagemaker.config INFO - Not applying SDK defaults ..." to stdout unless
    # its logger was configured: quiet it, only where the application left it unset.
    import logging

    quiet = logging.getLogger("sagemaker.config")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)


def _sdk_session(aws: AwsConfig, cfg: SageMakerConfig, bucket: str, prefix: str) -> Any:
    """A ``sagemaker.modules.Session`` on our boto3 session. Telemetry opt-out is the SDK's own
    ``TelemetryOptOut`` setting, read from the session's ``sagemaker_config``: the modules Session has no
    such attribute, so ModelTrainer would report usage however the user configured the SDK."""
    from sagemaker.modules import Session

    opt_out = not cfg.sdk_telemetry or is_local_endpoint(aws.endpoint_for("sagemaker"))

    class _Session(Session):  # type: ignore[misc]
        sagemaker_config = _TELEMETRY_OFF if opt_out else None

    return _Session(
        boto_session=aws.sdk_session(), default_bucket=bucket, default_bucket_prefix=prefix or None
    )


def validate_requests(boto_session: Any) -> None:
    """Check every SageMaker request this session sends against botocore's service model (patterns,
    lengths, enums: what botocore skips), before it is sent."""

    def check(params: dict[str, Any], model: Any, **_: Any) -> None:
        from bedrock_ft._shapes import input_errors

        errors = input_errors("sagemaker", model.name, params)
        if errors:
            raise ConfigError(f"{model.name} request refused before sending: " + "; ".join(errors))

    boto_session.events.register(
        "before-parameter-build.sagemaker", check, unique_id="bedrock-ft-validate-sagemaker"
    )


def submit_job(
    qlora: QLoRAConfig,
    training: TrainingConfig,
    *,
    artifact: DatasetArtifact | None,
    dataset: Any,
    run_hash: str,
    aws: AwsConfig,
    say: Progress,
) -> SageMakerJob:
    """Upload the dataset and code, create the job; returns at once (the job is InProgress)."""
    from bedrock_ft.aws import split_s3_uri

    cfg = training.sagemaker
    assert cfg is not None
    bucket, prefix = split_s3_uri(cfg.output_s3_uri, folder=True)
    s3 = aws.client("s3")
    for what, uri in (("output_s3_uri", cfg.output_s3_uri), ("checkpoint_s3_uri", cfg.checkpoint_s3_uri)):
        if uri is not None:
            _check_bucket(s3, split_s3_uri(uri, folder=True)[0], what)
    checkpoint = checkpoint_uri(cfg, run_hash)
    data_uri = upload_dataset(s3, artifact, dataset, bucket=bucket, prefix=prefix, say=say)

    _quiet_config_loader()
    from sagemaker.modules.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        Networking,
        OutputDataConfig,
        SourceCode,
        StoppingCondition,
        Tag,
    )
    from sagemaker.modules.train import ModelTrainer

    session = _sdk_session(aws, cfg, bucket, prefix.rstrip("/"))
    validate_requests(session.boto_session)
    image = cfg.image_uri or default_image(cfg.instance_type, aws.resolved_region() or "us-east-1")
    with tempfile.TemporaryDirectory(prefix="bedrock-ft-job-") as code:
        write_code(Path(code), qlora, training, cfg)
        from bedrock_ft._version import __version__

        trainer = ModelTrainer(
            training_image=image,
            role=cfg.role_arn,
            base_job_name=cfg.base_job_name,
            source_code=SourceCode(
                source_dir=code,
                requirements="requirements.txt",
                command=f"python -m bedrock_ft.training.entrypoint {CODE_FILE} --sagemaker-job",
            ),
            compute=Compute(
                instance_type=cfg.instance_type,
                instance_count=cfg.instance_count,
                volume_size_in_gb=cfg.volume_size_gb,
                volume_kms_key_id=cfg.kms_key_id,
                enable_managed_spot_training=cfg.spot or None,
            ),
            stopping_condition=StoppingCondition(
                max_runtime_in_seconds=cfg.max_runtime_s, max_wait_time_in_seconds=cfg.wait_limit_s
            ),
            output_data_config=OutputDataConfig(
                s3_output_path=cfg.output_s3_uri, compression_type="NONE", kms_key_id=cfg.kms_key_id
            ),
            checkpoint_config=CheckpointConfig(s3_uri=checkpoint, local_path="/opt/ml/checkpoints"),
            networking=Networking(subnets=list(cfg.subnets), security_group_ids=list(cfg.security_group_ids))
            if cfg.subnets
            else None,
            tags=[Tag(key=k, value=v) for k, v in cfg.tags.items()] or None,
            environment={"BEDROCK_FT_VERSION": __version__, **cfg.environment},
            sagemaker_session=session,
        )
        say(f"submitting a SageMaker training job ({cfg.instance_type}{', spot' if cfg.spot else ''}) "
            f"with image {image}")  # fmt: skip
        _fresh_sdk_client(session.boto_session)
        with translate_client_errors("CreateTrainingJob"), _quiet_sdk():
            trainer.train(input_data_config=[InputData(channel_name=DATASET_CHANNEL, data_source=data_uri)],
                          wait=False, logs=False)  # fmt: skip
        name = trainer._latest_training_job.training_job_name
    say(f"training job {name} created; checkpoints sync to {checkpoint}")
    return SageMakerJob(name, aws=aws, poll_interval=cfg.poll_interval_s, progress=say)


def run_on_sagemaker(
    qlora: QLoRAConfig,
    training: TrainingConfig,
    *,
    artifact: DatasetArtifact | None,
    dataset: Any,
    info: dict[str, Any],
    say: Progress,
    wait: bool,
) -> SageMakerJob | AdapterArtifact:
    """The run directory's job: re-attached while it runs, fetched once it completed, submitted (again,
    resuming from the checkpoints) otherwise. ``wait`` watches it to the end and returns the adapter."""
    from bedrock_ft.training._rundir import RunDir
    from bedrock_ft.training._sm_watch import read_record

    cfg = training.sagemaker
    assert cfg is not None
    run = RunDir(training.output_dir)
    state = run.prepare(overwrite=training.overwrite, resume=training.resume, run_info=info)
    checkpoint = checkpoint_uri(cfg, info["run_hash"])
    aws = cfg.aws
    if state == "finished":
        say(f"{run.path}: this run already finished; returning its adapter")
        return AdapterArtifact.read(run.manifest)
    if state == "replace":
        say(f"overwrite: deleting the previous run in {run.path} and its checkpoints in {checkpoint}")
        run.clear()
        _delete_prefix(aws.client("s3"), checkpoint)
    if state in ("fresh", "replace"):
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_run({**info, "backend": "sagemaker", "world_size": None, "strategy": None})
    job: SageMakerJob | None = None
    record = read_record(record_path(run.path))
    if record is not None:
        job = SageMakerJob.attach(
            record["job_name"], aws=aws, poll_interval=cfg.poll_interval_s, progress=say
        )
        described = job.describe()
        status = described["TrainingJobStatus"]
        if status in ("InProgress", "Stopping"):
            say(f"re-attaching to training job {job.name} ({status} · {described.get('SecondaryStatus')})")
        elif status == "Completed":
            say(f"training job {job.name} completed; fetching its adapter")
        else:
            say(f"the last training job {job.name} ended {status}; submitting a new one, which resumes from "
                f"the checkpoints in {checkpoint}")  # fmt: skip
            job = None
    if job is None:
        job = submit_job(qlora, training, artifact=artifact, dataset=dataset, run_hash=info["run_hash"],
                         aws=aws, say=say)  # fmt: skip
        write_record(run.path, job, checkpoint)
    if not wait:
        return job
    return job.wait(output_dir=run.path)


def _delete_prefix(s3: Any, uri: str) -> None:
    from bedrock_ft.aws import split_s3_uri

    bucket, prefix = split_s3_uri(uri, folder=True)
    with translate_client_errors("DeleteObjects"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def _fresh_sdk_client(boto_session: Any) -> None:
    """sagemaker_core keeps one SageMaker client per process: ``SageMakerClient`` is a singleton made from
    the first session it saw, whatever session a later job passes. A process that submits to two places
    (the local stack, then AWS; or another region) would create the second job through the first client.
    Forget it, so this job goes through this run's session: its region, endpoint and request checks."""
    from botocore.config import Config
    from sagemaker_core.main.utils import SageMakerClient, SingletonMeta

    SingletonMeta._instances.pop(SageMakerClient, None)
    SageMakerClient(session=boto_session, region_name=boto_session.region_name,
                    config=Config(retries={"max_attempts": 10, "mode": "standard"}))  # fmt: skip


@contextmanager
def _quiet_sdk() -> Iterator[None]:
    """The SDK's INFO lines (image URI, "Creating training_job resource") go to stdout through its own rich
    handler; bedrock-ft reports the submission itself. Left as the application set them otherwise."""
    import logging

    names = (
        "sagemaker_core.main.utils",
        "sagemaker_core.main.resources",
        "sagemaker.modules",
        "sagemaker.config",
    )
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger, level in zip(loggers, saved, strict=True):
        if level in (logging.NOTSET, logging.INFO, logging.DEBUG) and not logger.isEnabledFor(logging.DEBUG):
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)


def checkpoint_uri(cfg: SageMakerConfig, run_hash: str) -> str:
    return cfg.checkpoint_s3_uri or f"{cfg.output_s3_uri}/checkpoints/{run_hash}"


def default_image(instance_type: str, region: str) -> str:
    from sagemaker import image_uris

    framework, version, py = SageMakerConfig.image_framework()
    return str(
        image_uris.retrieve(
            framework,
            region,
            version=version,
            py_version=py,
            image_scope="training",
            instance_type=instance_type,
        )
    )


def write_code(directory: Path, qlora: QLoRAConfig, training: TrainingConfig, cfg: SageMakerConfig) -> None:
    """The job's code channel: the config file the entrypoint reads, and the requirements."""
    settings = {
        "dataset": "${SM_CHANNEL_DATASET}",
        "qlora": qlora.model_dump(mode="json"),
        "training": training.replace(resume=True, overwrite=False).model_dump(mode="json"),
    }
    atomic_write_text(directory / CODE_FILE, json.dumps(settings, indent=2) + "\n")
    lines = training_stack()
    if cfg.library_wheel:
        wheel = Path(cfg.library_wheel).expanduser()
        if not wheel.is_file():
            raise ConfigError(f"sagemaker.library_wheel: {wheel} is not a file")
        shutil.copy2(wheel, directory / wheel.name)
        lines[0] = f"./{wheel.name}[train]"
    header = "# bedrock-ft and the training stack it was tested with; torch comes from the image\n"
    atomic_write_text(directory / "requirements.txt", header + "\n".join([*lines, *cfg.requirements]) + "\n")


def upload_dataset(
    s3: Any, artifact: DatasetArtifact | None, dataset: Any, *, bucket: str, prefix: str, say: Progress
) -> str:
    """The dataset channel's S3 prefix: the artifact (manifest and local splits), or a saved Dataset,
    under ``<output>/datasets/<content hash>/``; an upload already there is reused."""
    with tempfile.TemporaryDirectory(prefix="bedrock-ft-dataset-") as tmp:
        root = Path(tmp) / "dataset"
        root.mkdir()
        if artifact is not None:
            updates = {}
            for field in DatasetArtifact.path_fields:
                value = getattr(artifact, field)
                if value and not value.startswith("s3://"):
                    source = Path(value)
                    if not source.is_file():
                        raise TrainingError(f"dataset {field}: {source} does not exist")
                    shutil.copy2(source, root / source.name)
                    updates[field] = str(root / source.name)
            artifact.model_copy(update=updates).write(root)
        else:
            dataset.save_to_disk(str(root))
        files = sorted(p for p in root.rglob("*") if p.is_file())
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        key_prefix = f"{prefix}datasets/{digest.hexdigest()[:16]}/"
        uri = f"s3://{bucket}/{key_prefix}"
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=key_prefix)
        if listed.get("KeyCount", 0) >= len(files):
            say(f"dataset already uploaded: {uri}")
            return uri
        say(f"uploading the dataset to {uri}")
        for path in files:
            with translate_client_errors("PutObject"):
                s3.upload_file(str(path), bucket, key_prefix + path.relative_to(root).as_posix())
    return uri


def _check_bucket(s3: Any, bucket: str, what: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise ConfigError(
                f"sagemaker.{what}: bucket {bucket!r} does not exist (create it first)"
            ) from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise ConfigError(
                f"sagemaker.{what}: no access to bucket {bucket!r} with these credentials"
            ) from None
        raise


def record_path(output_dir: str | Path) -> Path:
    return Path(output_dir) / "sagemaker.json"


def write_record(output_dir: str | Path, job: SageMakerJob, checkpoint: str) -> None:
    atomic_write_text(record_path(output_dir), json.dumps(job_record(job, checkpoint), indent=2) + "\n")
