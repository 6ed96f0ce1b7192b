"""The artifact base: the manifest round trip every stage output shares, and how a stage reads its input.

Local paths inside the manifest's directory are stored relative to it, so the directory can be moved
or copied elsewhere and read back with correct paths. ``s3://`` URIs are kept as they are.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bedrock_ft._io import atomic_write_text
from bedrock_ft._version import __version__
from bedrock_ft.errors import ArtifactError

__all__ = ["MANIFEST_NAME", "Artifact"]

MANIFEST_NAME = "manifest.json"

A = TypeVar("A", bound="Artifact")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _is_uri(value: str) -> bool:
    return "://" in value


class Artifact(BaseModel):
    """Common fields and the manifest round trip."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = Field(description="Which stage output this is.")
    bedrock_ft_version: str = Field(default=__version__, description="bedrock-ft version that wrote it.")
    created_at: datetime = Field(default_factory=_now, description="When it was made (UTC).")
    config_hash: str | None = Field(
        default=None, description="Hash of the stage config that produced it (BaseConfig.config_hash)."
    )

    # Fields holding a local path or a URI; local paths are stored relative to the manifest.
    path_fields: ClassVar[tuple[str, ...]] = ()

    # --- JSON ------------------------------------------------------------------------------------

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls: type[A], text: str, *, source: str = "<string>") -> A:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(
                f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        return cls._validate(data, source)

    @classmethod
    def _validate(cls: type[A], data: Any, source: str) -> A:
        if not isinstance(data, dict) or "kind" not in data:
            raise ArtifactError(f"{source}: not a bedrock-ft manifest (no 'kind')")
        expected = cls.model_fields["kind"].default
        if cls is not Artifact and data["kind"] != expected:
            raise ArtifactError(f"{source}: holds a {data['kind']!r} artifact, expected {expected!r}")
        try:
            if cls is Artifact:
                from bedrock_ft.artifacts._stages import ANY_ARTIFACT

                return cast(A, ANY_ARTIFACT.validate_python(data))
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
            )
            raise ArtifactError(f"{source}: invalid {data['kind']!r} manifest: {problems}") from None

    # --- manifest files --------------------------------------------------------------------------

    def write(self, directory: str | Path) -> Path:
        """Write ``manifest.json`` into ``directory`` atomically; returns the manifest path."""
        directory = Path(directory).resolve()
        updates = {
            name: _relativize(value, directory)
            for name in self.path_fields
            if isinstance(value := getattr(self, name), str)
        }
        manifest = directory / MANIFEST_NAME
        atomic_write_text(manifest, self.model_copy(update=updates).to_json())
        return manifest

    @classmethod
    def read(cls: type[A], path: str | Path) -> A:
        """Read a manifest, given the file or the directory holding it."""
        path = Path(path)
        manifest = path / MANIFEST_NAME if path.is_dir() else path
        try:
            text = manifest.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArtifactError(f"{manifest}: no manifest here (was the stage run to the end?)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{manifest}: can't read: {exc}") from None
        artifact = cls.from_json(text, source=str(manifest))
        base = manifest.parent.resolve()
        updates = {
            name: _absolutize(value, base)
            for name in artifact.path_fields
            if isinstance(value := getattr(artifact, name), str)
        }
        return artifact.model_copy(update=updates)

    @classmethod
    def from_input(cls: type[A], value: A | str | os.PathLike[str]) -> A | None:
        """What every stage does with its input: ``value`` itself when it is this artifact; read from
        ``value`` when it is a manifest or a directory holding one; None when it is a path without a
        manifest (a stage that also takes a bare directory, a peft adapter or a model, takes it then).

        Raises :class:`~bedrock_ft.errors.ArtifactError` naming the path when it does not exist or holds
        another kind of artifact, and when ``value`` is neither an artifact nor a path.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, Artifact):
            raise ArtifactError(f"expected a {_kind_of(cls)!r} artifact, got a {value.kind!r} artifact")
        if not isinstance(value, str | os.PathLike):
            raise ArtifactError(
                f"expected a {cls.__name__} or the path of its manifest, got {type(value).__name__}"
            )
        path = Path(value).expanduser()
        if not path.exists():
            raise ArtifactError(f"{path}: no such file or directory")
        manifest = path / MANIFEST_NAME if path.is_dir() else path
        if manifest.name != MANIFEST_NAME or not manifest.is_file():
            return None
        return cls.read(manifest)


def _kind_of(cls: type[Artifact]) -> str:
    return str(cls.model_fields["kind"].default)


def _relativize(value: str, directory: Path) -> str:
    if _is_uri(value):
        return value
    path = Path(value).expanduser().resolve()
    if path.is_relative_to(directory):
        return path.relative_to(directory).as_posix() or "."
    return str(path)


def _absolutize(value: str, base: Path) -> str:
    if _is_uri(value) or Path(value).is_absolute():
        return value
    return str((base / value).resolve())
