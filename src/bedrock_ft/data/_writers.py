"""Writing a build: JSON Lines splits and the manifest, to a local directory or an ``s3://`` prefix.

Every file of a build is staged first (locally: a temporary name in the output directory; for S3: the
build's work directory) and published only by ``finish``, once all of them are complete: the old
manifest is removed, the new files take their place (renamed, or uploaded whole), the old build's
files the new one lacks are deleted, and the new manifest is written last. A build that fails before
``finish`` leaves a previous build as it was; one that fails inside ``finish`` (a crash between two
renames, a failed upload) leaves no manifest. So a directory or prefix with a manifest always holds a
complete build, and its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from bedrock_ft._io import TEMP_MARK, file_mode, remove_stale_temps
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
    """Where a build goes. ``check`` runs before any work, so a bad output fails fast.

    ``open`` and ``remove`` only stage; ``finish`` publishes; ``abort`` drops what was staged.
    """

    def uri(self, name: str) -> str: ...

    def check(self, *, overwrite: bool) -> None: ...

    def begin(self, *, overwrite: bool) -> None: ...

    def open(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    def remove(self, names: Sequence[str]) -> None: ...

    def finish(self, artifact: DatasetArtifact) -> None: ...

    def abort(self) -> None: ...


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
        self._staged: dict[str, Path] = {}
        self._obsolete: list[str] = []

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

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_MARK + name + ".", dir=self.directory)
        self._staged[name] = Path(tmp)  # registered first: abort() removes it however the write ends
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())

    def remove(self, names: Sequence[str]) -> None:
        self._obsolete = list(names)

    def finish(self, artifact: DatasetArtifact) -> None:
        (self.directory / MANIFEST_NAME).unlink(missing_ok=True)
        for name, tmp in list(self._staged.items()):
            os.replace(tmp, self.directory / name)
            del self._staged[name]
        for name in self._obsolete:
            (self.directory / name).unlink(missing_ok=True)
        artifact.write(self.directory)

    def abort(self) -> None:
        for tmp in self._staged.values():
            tmp.unlink(missing_ok=True)
        self._staged.clear()


class S3Output:
    def __init__(self, output: str, *, aws: Any = None, staging: Path | None = None) -> None:
        from bedrock_ft.aws import AwsConfig

        self.output = output.rstrip("/")
        bucket, _, prefix = self.output[len("s3://") :].partition("/")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.aws = aws or AwsConfig()
        self.staging = staging
        self._dir: Path | None = None
        self._staged: list[str] = []
        self._obsolete: list[str] = []

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
        """The build files present: one HEAD each, so a busy prefix (many keys) can't hide them."""
        found = []
        for name in BUILD_FILES:
            try:
                with translate_client_errors():
                    self._client().head_object(Bucket=self.bucket, Key=self.prefix + name)
            except ResourceNotFoundError:
                continue
            found.append(name)
        return found

    def begin(self, *, overwrite: bool) -> None:
        self.check(overwrite=overwrite)
        self._dir = Path(tempfile.mkdtemp(prefix="bedrock-ft-upload-", dir=self.staging))

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        if self._dir is None:
            raise RuntimeError("S3Output.open() before begin()")
        with (self._dir / name).open("w+b") as fh:
            yield fh
        self._staged.append(name)  # uploaded by finish(), once every file is complete

    def remove(self, names: Sequence[str]) -> None:
        self._obsolete = list(names)

    def finish(self, artifact: DatasetArtifact) -> None:
        s3, staged = self._client(), [(self._dir / n, n) for n in self._staged if self._dir is not None]
        try:
            with translate_client_errors():
                s3.delete_object(Bucket=self.bucket, Key=self.prefix + MANIFEST_NAME)
                for path, name in staged:
                    s3.upload_file(str(path), self.bucket, self.prefix + name)
                if self._obsolete:
                    objects = [{"Key": self.prefix + n} for n in self._obsolete]
                    s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})
                s3.put_object(
                    Bucket=self.bucket,
                    Key=self.prefix + MANIFEST_NAME,
                    Body=artifact.to_json().encode("utf-8"),
                    ContentType="application/json",
                )
        finally:
            self.abort()

    def abort(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir, self._staged = None, []


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
