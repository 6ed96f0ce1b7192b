"""Writing a build: JSON Lines splits and the manifest, to a local directory or an ``s3://`` prefix.

A build never leaves a half-written split. Locally each file is written under a temporary name and
renamed into place; on S3 each split is uploaded whole (an object appears complete or not at all).
The manifest is written last and, when a previous build is replaced, removed first: a directory or
prefix with a manifest always holds a complete build.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from bedrock_ft._io import atomic_file, remove_stale_temps
from bedrock_ft.artifacts import MANIFEST_NAME, DatasetArtifact
from bedrock_ft.errors import AwsError, DatasetError, ResourceNotFoundError, translate_client_errors

__all__ = [
    "BUILD_FILES",
    "EVAL_FILE",
    "TEST_FILE",
    "TRAIN_FILE",
    "LocalOutput",
    "OutputTarget",
    "S3Output",
    "eval_record",
    "open_output",
    "write_jsonl",
]

TRAIN_FILE = "train_dataset.json"
TEST_FILE = "test_dataset.json"
EVAL_FILE = "eval_dataset.jsonl"
BUILD_FILES = (MANIFEST_NAME, TRAIN_FILE, TEST_FILE, EVAL_FILE)


class OutputTarget(Protocol):
    """Where a build goes. ``check`` runs before any work, so a bad output fails fast."""

    def uri(self, name: str) -> str: ...

    def check(self, *, overwrite: bool) -> None: ...

    def begin(self, *, overwrite: bool) -> None: ...

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    def remove(self, names: Sequence[str]) -> None: ...

    def finish(self, artifact: DatasetArtifact) -> None: ...


def open_output(output: str, *, aws: Any = None, staging: Path | None = None) -> OutputTarget:
    """The target for a configured ``output``: an ``s3://`` prefix or a local directory."""
    if output.startswith("s3://"):
        return S3Output(output, aws=aws, staging=staging)
    return LocalOutput(Path(output).expanduser())


def _previous_build_error(where: str, found: Iterable[str]) -> DatasetError:
    return DatasetError(
        f"{where} holds a previous build ({', '.join(sorted(found))}); set overwrite=True to replace it, "
        "or choose another output",
        field="output",
    )


class LocalOutput:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def uri(self, name: str) -> str:
        return str(self.directory.resolve() / name)

    def check(self, *, overwrite: bool) -> None:
        d = self.directory
        if d.exists() and not d.is_dir():
            raise DatasetError(f"{d} exists and is not a directory", field="output")
        found = [name for name in BUILD_FILES if (d / name).exists()]
        if found and not overwrite:
            raise _previous_build_error(str(d), found)

    def begin(self, *, overwrite: bool) -> None:
        self.check(overwrite=overwrite)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"can't create {self.directory}: {exc}", field="output") from None
        remove_stale_temps(self.directory)  # what a killed build left
        (self.directory / MANIFEST_NAME).unlink(missing_ok=True)

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return atomic_file(self.directory / name)

    def remove(self, names: Sequence[str]) -> None:
        for name in names:
            (self.directory / name).unlink(missing_ok=True)

    def finish(self, artifact: DatasetArtifact) -> None:
        artifact.write(self.directory)


class S3Output:
    def __init__(self, output: str, *, aws: Any = None, staging: Path | None = None) -> None:
        from bedrock_ft.aws import AwsConfig

        self.output = output.rstrip("/")
        bucket, _, prefix = self.output[len("s3://") :].partition("/")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.aws = aws or AwsConfig()
        self.staging = staging

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def _client(self) -> Any:
        return self.aws.client("s3")

    def check(self, *, overwrite: bool) -> None:
        s3 = self._client()
        try:
            with translate_client_errors():
                s3.head_bucket(Bucket=self.bucket)
        except ResourceNotFoundError as exc:
            raise DatasetError(
                f"output {self.output}: bucket {self.bucket!r} does not exist; create it first",
                field="output",
            ) from exc
        except AwsError as exc:
            raise DatasetError(
                f"output {self.output}: can't reach the bucket: {exc}", field="output"
            ) from exc
        found = self._existing()
        if found and not overwrite:
            raise _previous_build_error(self.output, found)

    def _existing(self) -> list[str]:
        with translate_client_errors():
            page = self._client().list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/")
        present = {o["Key"][len(self.prefix) :] for o in page.get("Contents", [])}
        return [name for name in BUILD_FILES if name in present]

    def begin(self, *, overwrite: bool) -> None:
        self.check(overwrite=overwrite)
        with translate_client_errors():
            self._client().delete_object(Bucket=self.bucket, Key=self.prefix + MANIFEST_NAME)

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        with tempfile.TemporaryDirectory(prefix="bedrock-ft-upload-", dir=self.staging) as tmp:
            path = Path(tmp) / name
            with path.open("w+b") as fh:
                yield fh
            with translate_client_errors():
                self._client().upload_file(str(path), self.bucket, self.prefix + name)

    def remove(self, names: Sequence[str]) -> None:
        if names:
            with translate_client_errors():
                self._client().delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self.prefix + n} for n in names]}
                )

    def finish(self, artifact: DatasetArtifact) -> None:
        with translate_client_errors():
            self._client().put_object(
                Bucket=self.bucket,
                Key=self.prefix + MANIFEST_NAME,
                Body=artifact.to_json().encode("utf-8"),
                ContentType="application/json",
            )


def write_jsonl(fh: BinaryIO, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write rows as JSON Lines (UTF-8, no ASCII escaping, stable key order); returns the row count."""
    count = 0
    chunk: list[str] = []
    for row in rows:
        chunk.append(json.dumps(row, ensure_ascii=False))
        count += 1
        if len(chunk) >= 1000:
            fh.write(("\n".join(chunk) + "\n").encode("utf-8"))
            chunk.clear()
    if chunk:
        fh.write(("\n".join(chunk) + "\n").encode("utf-8"))
    return count


def eval_record(messages: Sequence[Mapping[str, str]], category: str | None) -> dict[str, str]:
    """The fmeval view of a conversation: the last user turn, the final assistant turn, the category.

    ``system`` is kept when the conversation has one, so the evaluator can ask the same way training did.
    """
    question = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    row = {"question": question, "answer": messages[-1]["content"]}
    if category is not None:
        row["category"] = category
    if messages and messages[0]["role"] == "system":
        row["system"] = messages[0]["content"]
    return row
