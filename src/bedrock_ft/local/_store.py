"""Persistent state of the local Bedrock: import jobs and imported models, one JSON file each.

Layout under the data directory::

    jobs/<job id>.json
    models/<model id>/model.json
    models/<model id>/weights/...        the files copied out of S3
    staging/<job id>/                    a job's copy in progress (removed on restart)

Every write is atomic, so a killed server leaves the old record or the new one. Ids are 12 lowercase
alphanumerics, as Bedrock's are; anything else is refused before it touches the file system.
"""

from __future__ import annotations

import fcntl
import json
import logging
import re
import secrets
import shutil
import string
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bedrock_ft._io import atomic_write_text

__all__ = ["JobRecord", "ModelRecord", "Store", "StoreLockedError", "new_id", "now"]

log = logging.getLogger("bedrock_ft.local")


class StoreLockedError(RuntimeError):
    """Another local Bedrock is using this data directory."""


_ID = re.compile(r"^[a-z0-9]{12}$")
_ALPHABET = string.ascii_lowercase + string.digits


def new_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(12))


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"not a local Bedrock id: {value!r}")
    return value


@dataclass
class JobRecord:
    id: str
    arn: str
    name: str
    model_name: str
    role_arn: str
    s3_uri: str
    status: str  # InProgress | Completed | Failed
    creation_time: str
    last_modified_time: str
    request: dict[str, Any]
    """The request's members, for idempotency checks and GetModelImportJob."""
    client_token: str | None = None
    end_time: str | None = None
    failure_message: str | None = None
    model_arn: str | None = None


@dataclass
class ModelRecord:
    id: str
    arn: str
    name: str
    job_name: str
    job_arn: str
    s3_uri: str
    creation_time: str
    architecture: str
    instruct_supported: bool
    invoke_format: str  # "openai" (the three formats) or the native format's name
    custom_model_units: int
    weight_bytes: int
    tags: list[dict[str, str]] = field(default_factory=list)


class Store:
    """Thread-safe records in memory, written through to disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        root.mkdir(parents=True, exist_ok=True)
        # One server per data directory: a second would fail the first one's jobs and delete its copies.
        self._lockfile = (root / ".lock").open("a+")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise StoreLockedError(f"{root} is in use by another local Bedrock") from None
        for sub in ("jobs", "models", "staging"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, JobRecord] = {}
        self.models: dict[str, ModelRecord] = {}
        self._load()

    # --- paths -------------------------------------------------------------------------------------

    def weights_dir(self, model_id: str) -> Path:
        return self.root / "models" / _check_id(model_id) / "weights"

    def staging_dir(self, job_id: str) -> Path:
        return self.root / "staging" / _check_id(job_id)

    # --- records -----------------------------------------------------------------------------------

    def save_job(self, job: JobRecord) -> None:
        with self.lock:
            self.jobs[job.id] = job
            path = self.root / "jobs" / f"{_check_id(job.id)}.json"
            atomic_write_text(path, json.dumps(asdict(job), indent=2) + "\n")

    def save_model(self, model: ModelRecord) -> None:
        with self.lock:
            self.models[model.id] = model
            path = self.root / "models" / _check_id(model.id) / "model.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(asdict(model), indent=2) + "\n")

    def delete_model(self, model_id: str) -> None:
        with self.lock:
            self.models.pop(model_id, None)
            directory = self.root / "models" / _check_id(model_id)
            # Remove the record first, so a crash mid-delete leaves no half-model that lists as live.
            (directory / "model.json").unlink(missing_ok=True)
            shutil.rmtree(directory, ignore_errors=True)

    def close(self) -> None:
        """Release the data directory for another server."""
        if not self._lockfile.closed:
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
            self._lockfile.close()

    def _load(self) -> None:
        for path in sorted((self.root / "jobs").glob("*.json")):
            try:
                job = JobRecord(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable job record %s: %s", path, exc)
                continue
            if job.status == "InProgress":
                # The thread that ran it is gone with the old process.
                job.status = "Failed"
                job.failure_message = "The local Bedrock stopped while this job ran; start the import again."
                job.end_time = job.last_modified_time = now()
                self.save_job(job)
            self.jobs[job.id] = job
        for path in sorted((self.root / "models").glob("*/model.json")):
            try:
                model = ModelRecord(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable model record %s: %s", path, exc)
                continue
            self.models[model.id] = model
        for leftover in (self.root / "staging").iterdir():
            shutil.rmtree(leftover, ignore_errors=True)
        # A model directory without model.json is a crashed import's or delete's leftover.
        for directory in (self.root / "models").iterdir():
            if directory.is_dir() and not (directory / "model.json").exists() and _ID.match(directory.name):
                shutil.rmtree(directory, ignore_errors=True)
