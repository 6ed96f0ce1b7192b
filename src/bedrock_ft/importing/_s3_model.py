"""A model already in S3 (a training job's output prefix), checked and imported where it is.

Only the small files and each ``.safetensors`` header are read, with ranged GETs. They go into a
temporary *shadow* directory where each weight file is a sparse file of its object's true size that
holds just its header, so the unchanged preflight rules (the size limit included) run on it as on a
local model. Nothing is uploaded: the import job reads the model's own prefix.

The import's identity comes from the sha256 of each file in the prefix's bedrock-ft ``manifest.json``
(a :class:`~bedrock_ft.artifacts.ModelArtifact`) when there is one, else from the objects' ETags and
sizes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bedrock_ft._safetensors import MAX_HEADER_BYTES
from bedrock_ft.artifacts import MANIFEST_NAME, FileEntry, ModelArtifact
from bedrock_ft.aws import split_s3_uri
from bedrock_ft.errors import ArtifactError, ResourceNotFoundError, translate_client_errors
from bedrock_ft.importing._chat_facts import model_chat_facts
from bedrock_ft.importing._config import ImportConfig, folder_uri, s3_uri_problem
from bedrock_ft.importing._jobs import import_identity
from bedrock_ft.importing._upload import first_of
from bedrock_ft.progress import Progress

__all__ = [
    "MAX_OBJECTS",
    "SMALL_FILE_BYTES",
    "S3Model",
    "S3Object",
    "check_s3_model",
    "open_s3_model",
    "shadow_dir",
]

SMALL_FILE_BYTES = 64 * 2**20
"""Files other than .safetensors up to this size are read whole (config, tokenizer, index, template)."""
MAX_OBJECTS = 5000
"""More objects than this under a prefix is not a model (the largest have a few hundred shards)."""


@dataclass(frozen=True)
class S3Object:
    key: str
    name: str  # relative to the model's prefix, '/'-separated
    size: int
    etag: str


@dataclass(frozen=True)
class S3Model:
    """The objects under a model's prefix and, when known, the artifact describing them."""

    uri: str  # s3://bucket/prefix/, the import job's source
    bucket: str
    objects: tuple[S3Object, ...]
    artifact: ModelArtifact | None  # the one given, or the prefix's manifest.json

    @property
    def from_manifest(self) -> bool:
        """Whether the identity comes from the sha256 of the files an artifact lists."""
        return self.artifact is not None and bool(self.artifact.files)

    def identity_files(self) -> list[tuple[str, str]]:
        """(name, digest) of each file: the manifest's sha256, else the object's ETag and size."""
        if self.artifact is not None and self.artifact.files:
            return [(f.path, f.sha256) for f in sorted(self.artifact.files, key=lambda f: f.path)]
        return [(o.name, f"etag:{o.etag}:{o.size}") for o in self.objects]


def check_s3_model(
    s3: Any, cfg: ImportConfig, artifact: ModelArtifact | None, uri: str, *, say: Progress
) -> tuple[ImportConfig, str, dict[str, Any]]:
    """Preflight the model at ``uri`` through a shadow directory of its small files and headers.

    Returns the config the job runs with (``s3_uri``: the model's own prefix), the import's identity,
    and the chat facts read from its tokenizer files (:func:`model_chat_facts`).
    """
    from bedrock_ft.preflight import PreflightReport, check_model_dir

    found = open_s3_model(s3, uri, artifact, say=say)
    if cfg.s3_uri is not None and cfg.s3_uri != found.uri:
        say(f"the model is imported from where it is, {found.uri}; s3_uri ({cfg.s3_uri}) is not used")
    say(f"preflight: checking {found.uri} against the Custom Model Import rules (headers only)")
    with shadow_dir(s3, found, workers=cfg.concurrency) as shadow:
        report = check_model_dir(shadow)
        PreflightReport.of(found.uri, report.findings).raise_for_errors()
        template = model_chat_facts(found.artifact, shadow)
    if found.from_manifest:
        say(f"identity: the sha256 of each file, from the model's {MANIFEST_NAME}")
    else:
        say(f"identity: the ETag and size of each object (no bedrock-ft {MANIFEST_NAME} at {found.uri})")
    cfg = cfg.model_copy(update={"s3_uri": found.uri})
    return cfg, import_identity(cfg, found.identity_files()), template


def open_s3_model(s3: Any, uri: str, artifact: ModelArtifact | None, *, say: Progress) -> S3Model:
    """List the model at ``uri`` and check it against ``artifact`` or the prefix's manifest.json.

    A prefix holding nothing, a bucket that does not exist, an unsafe key, or objects that differ from
    the manifest's list (missing, extra or resized) is an error naming the URI or the file.
    """
    problem = s3_uri_problem(uri, whole_bucket=True)
    if problem:
        raise ArtifactError(f"model {uri!r}: {problem}")
    uri = folder_uri(uri)
    bucket, prefix = split_s3_uri(uri, folder=True)
    with translate_client_errors():
        objects = _list(s3, bucket, prefix, uri)
        if artifact is None:
            artifact = _manifest(s3, bucket, uri, objects)
            subdir = _model_subdir(artifact)
            if artifact is not None and subdir:  # a merge's output dir: the model is in its model_dir
                uri, prefix = f"{uri}{subdir}/", f"{prefix}{subdir}/"
                say(f"{MANIFEST_NAME} there puts the model in {subdir}/: importing {uri}")
                objects = _list(s3, bucket, prefix, uri)
    model = S3Model(uri, bucket, tuple(objects), artifact)
    if model.from_manifest:
        _check_listed(model, artifact.files if artifact else ())
    return model


def _list(s3: Any, bucket: str, prefix: str, uri: str) -> list[S3Object]:
    try:
        with translate_client_errors("ListObjectsV2"):
            listed: list[dict[str, Any]] = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                listed.extend(page.get("Contents", []))
                if len(listed) > MAX_OBJECTS:  # a bucket or a tree given by mistake: don't read it all
                    raise ArtifactError(
                        f"{uri} holds over {MAX_OBJECTS} objects: that is not one model's directory. Give "
                        "the prefix that holds the model's config.json and .safetensors files"
                    )
    except ResourceNotFoundError as exc:
        error = ResourceNotFoundError(
            f"the S3 bucket {bucket!r} of {uri} does not exist (or is in another account)"
        )
        error.aws = exc.aws
        raise error from None
    objects = [
        S3Object(obj["Key"], _relative(obj["Key"], prefix, uri), int(obj["Size"]), str(obj.get("ETag", "")))
        for obj in listed
        if not obj["Key"].endswith("/")  # folder markers hold nothing
    ]
    if not objects:
        raise ArtifactError(
            f"nothing at {uri}: no objects under that prefix. Give the prefix the model was written to "
            "(the one that holds config.json and the .safetensors files)"
        )
    return sorted(objects, key=lambda o: o.name)


def _relative(key: str, prefix: str, uri: str) -> str:
    """The key's path under the prefix; refuses one that would leave the shadow directory."""
    name = key[len(prefix) :]
    parts = name.split("/")
    if "\\" in name or "\x00" in name or any(part in ("", ".", "..") for part in parts):
        raise ArtifactError(
            f"{uri}: the object {key!r} is not a safe file name inside the model directory; remove it"
        )
    return name


def _manifest(s3: Any, bucket: str, uri: str, objects: list[S3Object]) -> ModelArtifact | None:
    """The prefix's manifest.json when it is a bedrock-ft model manifest (another tool's is a file
    like any other); a bedrock-ft one that does not validate is an error naming it."""
    found = next((o for o in objects if o.name == MANIFEST_NAME), None)
    if found is None or found.size > SMALL_FILE_BYTES:
        return None
    raw = _get(s3, bucket, found.key)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") != "model":
        return None
    return ModelArtifact.from_json(raw.decode("utf-8"), source=uri + MANIFEST_NAME)


def _model_subdir(artifact: ModelArtifact | None) -> str | None:
    """The manifest's relative model_dir when it is a folder below the manifest ('model' for a merge's
    output directory); None when the files sit beside the manifest."""
    if artifact is None:
        return None
    subdir = artifact.model_dir.strip("/")
    parts = subdir.split("/")
    if "://" in subdir or artifact.model_dir.startswith("/") or subdir in ("", "."):
        return None
    return None if any(p in ("", ".", "..") for p in parts) else subdir


def _check_listed(model: S3Model, files: tuple[FileEntry, ...]) -> None:
    """The objects are the files the manifest lists, each of the listed size (the manifest itself and
    nothing else may be beside them)."""
    listed = {f.path: f for f in files}
    present = {o.name: o for o in model.objects if not (o.name == MANIFEST_NAME and o.name not in listed)}
    missing = sorted(set(listed) - set(present))
    if missing:
        raise ArtifactError(
            f"{model.uri}{first_of(missing)} is listed in the model's manifest but is not in S3; copy the "
            "whole model, or write it again"
        )
    extra = sorted(set(present) - set(listed))
    if extra:
        raise ArtifactError(
            f"{model.uri}{first_of(extra)} is not part of the model (not in its manifest); the import job "
            "would read it too: remove it, or write the model again"
        )
    for name, entry in sorted(listed.items()):
        if present[name].size != entry.size:
            raise ArtifactError(
                f"{model.uri}{name}: {present[name].size} bytes in S3, the manifest says {entry.size}: "
                "the object changed since the model was written; write it again"
            )


# --- the shadow directory ---------------------------------------------------------------------------


@contextmanager
def shadow_dir(s3: Any, model: S3Model, *, workers: int = 8, root: Path | None = None) -> Iterator[Path]:
    """A temporary directory (under ``root`` when given) that preflight sees as the model: small files
    read whole, each ``.safetensors`` a sparse file of its true size holding only its header, anything
    else big an empty sparse file of its size. Removed on exit."""
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="s3-model-", dir=root))
    try:
        with translate_client_errors(), ThreadPoolExecutor(max(1, min(workers, len(model.objects)))) as pool:
            list(pool.map(lambda obj: _shadow_file(s3, model, obj, directory), model.objects))
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _shadow_file(s3: Any, model: S3Model, obj: S3Object, directory: Path) -> None:
    path = directory.joinpath(*obj.name.split("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if obj.name.endswith(".safetensors") and obj.size >= 8:
        head = _header(s3, model, obj)
    elif obj.size <= SMALL_FILE_BYTES:
        head = _get(s3, model.bucket, obj.key) if obj.size else b""
    else:
        head = b""  # preflight needs only its name and size
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(obj.size)  # a hole: no disk taken for the rest


def _header(s3: Any, model: S3Model, obj: S3Object) -> bytes:
    """The 8-byte header length and the header JSON. A length that runs past the object (or over the
    safetensors maximum) is kept alone: preflight's safetensors-header rule then names the file."""
    head = _get(s3, model.bucket, obj.key, (0, 8))
    if len(head) < 8:  # shorter than listed: it changed since; preflight says the file is truncated
        return head
    (length,) = struct.unpack("<Q", head)
    if length == 0 or length > MAX_HEADER_BYTES or 8 + length > obj.size:
        return head
    return head + _get(s3, model.bucket, obj.key, (8, 8 + length))


def _get(s3: Any, bucket: str, key: str, span: tuple[int, int] | None = None) -> bytes:
    """An object's bytes, or ``span`` (start, end exclusive) of them."""
    kwargs = {"Range": f"bytes={span[0]}-{span[1] - 1}"} if span else {}
    with translate_client_errors("GetObject"):
        body: bytes = s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()
    return body
