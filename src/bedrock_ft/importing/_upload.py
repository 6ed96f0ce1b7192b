"""The model's files to S3: what is already there is checked, what is missing is sent.

Every object we write carries the file's sha256 in its metadata (``x-amz-meta-sha256``). A file whose
object already has the same size and sha256 is not sent again, so a re-run after an interrupted
upload sends only what is missing. S3 verifies each part on arrival with the configured checksum
(CRC32 by default). Multipart uploads run through s3transfer: parts of a file, and files, in
parallel. config.json goes last, so a half-uploaded prefix never looks importable.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.artifacts import UploadSummary
from bedrock_ft.errors import ArtifactError, ConflictError, ResourceNotFoundError, translate_client_errors
from bedrock_ft.progress import OnBytes, Progress, byte_bar

if TYPE_CHECKING:
    from bedrock_ft.importing._config import ImportConfig

__all__ = [
    "SHA256_METADATA",
    "LocalFile",
    "RemoteObject",
    "UploadPlan",
    "abort_stale_uploads",
    "check_bucket",
    "delete_keys",
    "hash_files",
    "plan_upload",
    "remote_objects",
    "send",
    "upload_model",
]

SHA256_METADATA = "sha256"
"""User-metadata key (``x-amz-meta-sha256``) holding the hex sha256 of the whole file."""


@dataclass(frozen=True)
class LocalFile:
    path: Path
    name: str  # relative to the model directory, '/'-separated
    size: int
    sha256: str


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    sha256: str | None  # None: not written by bedrock-ft (no sha256 metadata)
    kms_key: str | None = None  # the SSE-KMS key it is encrypted with, if any


@dataclass
class UploadPlan:
    send: list[LocalFile] = field(default_factory=list)
    skip: list[LocalFile] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # keys under the prefix that are not this model's


def first_of(names: list[str]) -> str:
    """The first name, and how many more there are: ``a.json (and 2 more)``."""
    return names[0] + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)  # hashlib releases the GIL on big buffers: files hash in parallel
    return digest.hexdigest()


def hash_files(model_dir: Path, listed: Sequence[Any] | None, *, workers: int = 4) -> list[LocalFile]:
    """Every file of ``model_dir`` with its sha256, checked against the artifact's list when given.

    ``listed`` holds the artifact's FileEntry objects: a file that is missing, extra, resized or changed
    since the artifact was written is an :class:`ArtifactError` naming it.
    """
    paths = sorted(p for p in model_dir.rglob("*") if p.is_file())
    names = [p.relative_to(model_dir).as_posix() for p in paths]
    expected = {entry.path: entry for entry in listed or ()}
    if listed is not None:
        missing = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        if missing:
            raise ArtifactError(
                f"{model_dir}: {first_of(missing)} is listed in the model's manifest but missing; merge again"
            )
        if extra:
            raise ArtifactError(
                f"{model_dir}: {extra[0]} is not part of the merged model (not in its manifest); "
                "remove it, or merge again"
            )
        for path, name in zip(paths, names, strict=True):
            if path.stat().st_size != expected[name].size:
                raise ArtifactError(
                    f"{model_dir / name}: {path.stat().st_size} bytes, the manifest says "
                    f"{expected[name].size}: the file changed since the merge; merge again"
                )
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths) or 1))) as pool:
        digests = list(pool.map(_sha256, paths))
    files = [LocalFile(p, n, p.stat().st_size, d) for p, n, d in zip(paths, names, digests, strict=True)]
    if listed is not None:
        for f in files:
            if f.sha256 != expected[f.name].sha256:
                raise ArtifactError(
                    f"{f.path}: its sha256 differs from the manifest's: the file changed since the merge; "
                    "merge again"
                )
    return files


def check_bucket(s3: Any, bucket: str) -> None:
    try:
        with translate_client_errors("HeadBucket"):
            s3.head_bucket(Bucket=bucket)
    except ResourceNotFoundError as exc:
        error = ResourceNotFoundError(
            f"the S3 bucket {bucket!r} does not exist (or is in another account); create it first, in the "
            "region you import in (aws s3 mb s3://" + bucket + ")"
        )
        error.aws = exc.aws
        raise error from None


def remote_objects(s3: Any, bucket: str, prefix: str, *, workers: int = 8) -> dict[str, RemoteObject]:
    """The objects under ``prefix``, with the sha256 each carries in its metadata (None when none)."""
    keys: list[tuple[str, int]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend((obj["Key"], int(obj["Size"])) for obj in page.get("Contents", []))

    def head(item: tuple[str, int]) -> RemoteObject:
        key, size = item
        try:
            with translate_client_errors("HeadObject"):
                head = s3.head_object(Bucket=bucket, Key=key)
        except ResourceNotFoundError:  # deleted since the listing
            return RemoteObject(key, -1, None)
        meta = head.get("Metadata") or {}
        kms = head.get("SSEKMSKeyId") if head.get("ServerSideEncryption") == "aws:kms" else None
        return RemoteObject(key, size, meta.get(SHA256_METADATA), kms)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(keys) or 1))) as pool:
        found = list(pool.map(head, keys))
    return {obj.key: obj for obj in found if obj.size >= 0}


def _same_key(remote: str | None, wanted: str) -> bool:
    """Whether S3's key ARN for an object is the key the config names (an ARN, a key id or an alias ARN)."""
    return remote is not None and (remote == wanted or remote.endswith("/" + wanted))


def plan_upload(
    files: Sequence[LocalFile],
    remote: dict[str, RemoteObject],
    prefix: str,
    s3_uri: str,
    *,
    overwrite: bool,
    kms_key: str | None = None,
) -> UploadPlan:
    """What to send, skip and delete. A prefix that holds anything but (part of) this model is refused
    unless ``overwrite``: a file that differs, or an object that isn't one of the model's files. With
    ``kms_key``, a file of this model that is not encrypted with that key is sent again."""
    plan = UploadPlan()
    wanted = {prefix + f.name: f for f in files}
    foreign = sorted(key for key in remote if key not in wanted)
    changed = sorted(
        key
        for key, f in wanted.items()
        if key in remote and (remote[key].size != f.size or remote[key].sha256 != f.sha256)
    )
    if (foreign or changed) and not overwrite:
        examples = [f"{k[len(prefix) :]} (not in this model)" for k in foreign[:3]]
        examples += [f"{k[len(prefix) :]} (different content)" for k in changed[:3]]
        raise ConflictError(
            f"{s3_uri} already holds a different model: {', '.join(examples)}"
            + (" ..." if len(foreign) + len(changed) > len(examples) else "")
            + ". Import to another prefix, or set overwrite=True (--overwrite) to replace it"
        )
    plan.delete = foreign
    for key, f in wanted.items():
        unencrypted = key in remote and kms_key is not None and not _same_key(remote[key].kms_key, kms_key)
        (plan.send if key not in remote or key in changed or unencrypted else plan.skip).append(f)
    # config.json last: until it lands, the prefix does not look like a model to an import job.
    plan.send.sort(key=lambda f: (f.name == "config.json", -f.size, f.name))
    return plan


def abort_stale_uploads(
    s3: Any, bucket: str, prefix: str, *, keys: set[str] | None = None, before: datetime | None = None
) -> int:
    """Abort multipart uploads an interrupted run left under ``prefix`` (S3 bills their parts): those of
    ``keys`` only when given, and only those started before ``before`` (not a concurrent run's)."""
    aborted = 0
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            if keys is not None and upload["Key"] not in keys:
                continue
            if before is not None and upload.get("Initiated") and upload["Initiated"] >= before:
                continue
            try:
                with translate_client_errors("AbortMultipartUpload"):
                    s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                aborted += 1
            except ResourceNotFoundError:  # finished or aborted meanwhile
                pass
    return aborted


def delete_keys(s3: Any, bucket: str, keys: Iterable[str]) -> int:
    keys = list(keys)
    for start in range(0, len(keys), 1000):
        batch = keys[start : start + 1000]
        response = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise ConflictError(f"can't delete s3://{bucket}/{first.get('Key')}: {first.get('Message')}")
    return len(keys)


class _Subscriber:
    """s3transfer progress subscriber: forwards the bytes of one file."""

    def __init__(self, name: str, on_bytes: OnBytes) -> None:
        self.name = name
        self.on_bytes = on_bytes

    # s3transfer calls these by name (BaseSubscriber's protocol)
    def on_queued(self, **kwargs: Any) -> None:
        pass

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.on_bytes(self.name, bytes_transferred)

    def on_done(self, **kwargs: Any) -> None:
        pass


def send(
    s3: Any,
    bucket: str,
    prefix: str,
    files: Sequence[LocalFile],
    *,
    concurrency: int,
    chunk_bytes: int,
    threshold_bytes: int,
    extra_args: dict[str, Any],
    on_bytes: OnBytes | None = None,
) -> float:
    """Upload ``files``; returns the seconds it took.

    Big files go one after another, each in ``concurrency`` parallel parts, so an interrupted upload
    leaves at most one of them unfinished; the small ones then go together; config.json goes last.
    """
    from boto3.s3.transfer import TransferConfig
    from s3transfer.manager import TransferManager

    config = TransferConfig(
        multipart_threshold=threshold_bytes,
        multipart_chunksize=chunk_bytes,
        max_concurrency=concurrency,
        use_threads=True,
    )
    big = [f for f in files if f.size >= threshold_bytes and f.name != "config.json"]
    small = [f for f in files if f.size < threshold_bytes and f.name != "config.json"]
    last = [f for f in files if f.name == "config.json"]
    batches = [[f] for f in big] + [small, last]
    started = time.perf_counter()
    with TransferManager(s3, config) as manager:
        for batch in batches:
            futures = [
                manager.upload(
                    os.fspath(f.path),
                    bucket,
                    prefix + f.name,
                    extra_args={**extra_args, "Metadata": {SHA256_METADATA: f.sha256}},
                    subscribers=[_Subscriber(f.name, on_bytes)] if on_bytes else None,
                )
                for f in batch
            ]
            for future in futures:
                future.result()
    return time.perf_counter() - started


def upload_model(
    s3: Any,
    cfg: ImportConfig,
    files: list[LocalFile],
    *,
    say: Progress,
    progress_bar: bool = False,
    on_bytes: OnBytes | None = None,
) -> UploadSummary:
    """Send what ``cfg.s3_uri`` lacks of ``files`` (aborting stale multipart uploads of our own keys,
    deleting what is not part of the model with ``overwrite``), then check every object's size and
    sha256 against the local file."""
    started = datetime.now(timezone.utc)
    with translate_client_errors():
        check_bucket(s3, cfg.bucket)
        remote = remote_objects(s3, cfg.bucket, cfg.prefix, workers=cfg.concurrency)
        plan = plan_upload(
            files, remote, cfg.prefix, cfg.upload_uri, overwrite=cfg.overwrite, kms_key=cfg.sse_kms_key_id
        )
        aborted = abort_stale_uploads(
            s3, cfg.bucket, cfg.prefix, keys={cfg.prefix + f.name for f in plan.send}, before=started
        )
        if aborted:
            say(f"aborted {aborted} multipart upload(s) an interrupted run left behind")
        if plan.delete:
            say(f"overwrite: deleting {len(plan.delete)} object(s) that are not part of this model")
            delete_keys(s3, cfg.bucket, plan.delete)
        to_send = sum(f.size for f in plan.send)
        say(
            f"uploading {len(plan.send)} file(s), {to_send / 1e6:,.1f} MB, to {cfg.upload_uri}"
            + (f" ({len(plan.skip)} already there)" if plan.skip else "")
        )
        seconds = 0.0
        if plan.send:
            with byte_bar(progress_bar, to_send, "upload", on_bytes) as on_sent:
                seconds = send(
                    s3,
                    cfg.bucket,
                    cfg.prefix,
                    plan.send,
                    concurrency=cfg.concurrency,
                    chunk_bytes=cfg.chunk_bytes,
                    threshold_bytes=cfg.threshold_bytes,
                    extra_args=_extra_args(cfg),
                    on_bytes=on_sent,
                )
        after = remote_objects(s3, cfg.bucket, cfg.prefix, workers=cfg.concurrency)
    bad = [
        f.name
        for f in files
        if (obj := after.get(cfg.prefix + f.name)) is None or (obj.size, obj.sha256) != (f.size, f.sha256)
    ]
    if bad:
        raise ConflictError(
            f"after the upload, {cfg.upload_uri}{bad[0]} is missing or differs (another writer?); run again"
        )
    return UploadSummary(
        sent=[f.name for f in plan.send],
        skipped=[f.name for f in plan.skip],
        deleted=[key[len(cfg.prefix) :] for key in plan.delete],
        bytes_sent=to_send,
        seconds=round(seconds, 3),
        mb_per_s=round(to_send / 1e6 / seconds, 1) if seconds > 0 else None,
        concurrency=cfg.concurrency,
    )


def _extra_args(cfg: ImportConfig) -> dict[str, Any]:
    args: dict[str, Any] = {"ChecksumAlgorithm": cfg.checksum_algorithm}
    if cfg.sse_kms_key_id:
        args["ServerSideEncryption"] = "aws:kms"
        args["SSEKMSKeyId"] = cfg.sse_kms_key_id
    return args
