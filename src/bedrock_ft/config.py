"""Typed configs: one pydantic base for every stage, loadable from YAML, TOML or JSON.

A config is frozen and refuses unknown keys. When it is wrong, :class:`~bedrock_ft.errors.ConfigError`
lists every problem at once, each with its dotted field path, so a YAML file is fixed in one pass.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from typing_extensions import Self

from bedrock_ft._config_errors import to_config_error
from bedrock_ft._io import atomic_write_text
from bedrock_ft.errors import ConfigError, ConfigProblem

__all__ = [
    "BaseConfig",
    "StageFile",
    "StageSettings",
    "config_reference",
    "load_config_file",
    "load_stage_file",
    "parse_size",
]

C = TypeVar("C", bound="BaseConfig")

_SUFFIXES = (".yaml", ".yml", ".toml", ".json")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}  # fmt: skip


def parse_size(value: int | str) -> int:
    """Bytes in ``2GB`` (10^9, as transformers' ``max_shard_size``), ``500MiB`` (2^20) or a plain int."""
    if isinstance(value, int):
        return value
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size: write bytes, or a number with KB/MB/GB (or KiB/MiB/GiB)")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    return int(number * _UNITS[unit])


class BaseConfig(BaseModel):
    """Base of every bedrock-ft config.

    - frozen: a config is a value; derive a validated, changed copy with ``cfg.replace(...)``;
    - ``extra="forbid"``: a misspelt key is an error, not a silently ignored setting;
    - every field must carry a ``description`` (checked when a subclass is defined), which the
      docs and ``bedrock-ft ... --help`` show.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    # Config sections that only describe where and how to run, not what is produced. They are left out
    # of :meth:`config_hash`, so moving a run to another machine does not invalidate its artifacts.
    hash_exclude: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise to_config_error(exc, type(self)) from None

    # Tell pydantic this __init__ only wraps its own, so nested configs are still validated by the
    # core (every problem reported at once with its full path) instead of through this method.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            raise TypeError(
                f"{cls.__name__}: configs must not define __init__ (it would hide nested field paths "
                "in errors); use field defaults and validators instead"
            )
        missing = [name for name, field in cls.model_fields.items() if not field.description]
        if missing:
            raise TypeError(
                f"{cls.__name__}: every config field needs a description; missing on {', '.join(missing)}"
            )

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise to_config_error(exc, cls) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            raise to_config_error(exc, cls) from None

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed, validated like a new config (``model_copy`` is not)."""
        # dict(self) keeps nested configs as instances, so a union member can't turn into another.
        return self.model_validate({**dict(self), **changes})

    # --- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any], *, source: str | None = None) -> C:
        """Validate a mapping. ``source`` names where it came from, for error messages."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                [ConfigProblem("", f"expected a mapping of settings, got {type(data).__name__}")],
                source=source,
            )
        try:
            return cls.model_validate(dict(data))
        except ConfigError as exc:
            if source and not exc.source:
                raise ConfigError(exc.problems, source=source) from None
            raise

    @classmethod
    def from_file(cls: type[C], path: str | Path, *, section: str | None = None) -> C:
        """Load a YAML (``.yaml``/``.yml``), TOML or JSON file.

        ``section`` picks one top-level key, so one file can hold several stages' configs
        (as a pipeline config does).
        """
        data = load_config_file(path)
        source = str(path)
        if section is not None:
            if section not in data:
                raise ConfigError([ConfigProblem(section, "section missing from the file")], source=source)
            data = data[section]
            if not isinstance(data, Mapping):
                raise ConfigError(
                    [ConfigProblem(section, f"expected a mapping, got {type(data).__name__}")], source=source
                )
        return cls.from_dict(data, source=source)

    # --- writing ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data; ``from_dict(to_dict())`` gives an equal config."""
        return self.model_dump(mode="json")

    def to_file(self, path: str | Path) -> Path:
        """Write the config as YAML or JSON (by suffix), atomically."""
        path = Path(path)
        data = self.to_dict()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        elif path.suffix == ".json":
            text = json.dumps(data, indent=2) + "\n"
        else:
            raise ConfigError(f"can't write {path}: use a .yaml, .yml or .json suffix")
        atomic_write_text(path, text)
        return path

    def config_hash(self) -> str:
        """A short, stable hash of the settings that decide a stage's output.

        Equal configs hash equal across processes and machines; field order does not matter.
        Artifacts record it, and a pipeline skips a stage whose manifest carries the same hash.
        """
        data = self.model_dump(mode="json", exclude=self._hash_exclusions())
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _hash_exclusions(self) -> dict[str, Any]:
        """``hash_exclude`` of this config and, recursively, of every nested config (in lists and
        dicts too), in the nested form pydantic's ``exclude`` takes."""
        out: dict[Any, Any] = dict.fromkeys(self.hash_exclude, True)
        for name in type(self).model_fields:
            if name not in out and (nested := _nested_exclusions(getattr(self, name))):
                out[name] = nested
        return out


def _nested_exclusions(value: Any) -> dict[Any, Any]:
    if isinstance(value, BaseConfig):
        return value._hash_exclusions()
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, list | tuple):
        items = enumerate(value)
    elif isinstance(value, dict):
        items = value.items()
    else:
        return {}
    return {key: nested for key, item in items if (nested := _nested_exclusions(item))}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML, TOML or JSON file into a dict. Syntax errors name the file and the line."""
    path = Path(path)
    source = str(path)
    if path.suffix not in _SUFFIXES:
        raise ConfigError(
            f"unsupported config file type {path.suffix or '(none)'!r}: use one of {', '.join(_SUFFIXES)}",
            source=source,
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"can't read the file: {exc}", source=source) from None

    data: Any
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(_yaml_problem(exc), source=source) from None
    elif path.suffix == ".toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - exercised on Python 3.10 only
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", source=source) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", source=source
            ) from None

    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of settings at the top, got {type(data).__name__}", source=source
        )
    return data


def _yaml_problem(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"not valid YAML: {problem}"


# --- turning pydantic's errors into one ConfigError ------------------------------------------------


@dataclass(frozen=True)
class StageFile:
    """How a stage command's config file is laid out: ``input_key`` names what the stage reads (a path,
    optional in the file: the command line may give it), and each section holds one config's settings.
    A file for a stage with one section may also hold that config's fields at the top level."""

    sections: Mapping[str, type[BaseConfig]]
    input_key: str | None = None
    input_hint: str = ""
    input_required: bool = False


@dataclass(frozen=True)
class StageSettings:
    """What :func:`load_stage_file` read: the stage's input (or None) and one config per section."""

    input: str | None
    configs: Mapping[str, Any]


def load_stage_file(
    path: str | Path | None,
    layout: StageFile,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    section: str | None = None,
    input: str | None = None,
) -> StageSettings:
    """The one loader of every stage command's config file (``path``; None: defaults and ``overrides``
    only). ``overrides`` (command-line flags, per section) apply before validation, so a file may leave
    out what the flags give; so does ``input`` (the stage's input given on the command line), which wins
    over the file's. Every problem of every section is reported in one :class:`ConfigError`, each with
    its section and field path.

    ``section`` reads that one top-level key of a larger file (a pipeline config) as the stage's only
    section, ignoring the rest.
    """
    overrides = overrides or {}
    source = str(path) if path is not None else None
    data: dict[str, Any] = load_config_file(path) if path is not None else {}
    sections = dict(layout.sections)
    if section is not None:
        if len(sections) != 1:
            raise ConfigError(f"this stage has several sections ({', '.join(sections)}); no section= pick")
        if section not in data:
            raise ConfigError([ConfigProblem(section, "section missing from the file")], source=source)
        (only,) = sections
        data = {only: data[section]}
    keys = set(sections) | ({layout.input_key} if layout.input_key else set())
    flat = len(sections) == 1 and bool(data) and not keys & set(data)
    if flat:
        data = {next(iter(sections)): data}  # the one config's fields at the top level
    unknown = sorted(set(data) - keys)
    if unknown:
        expected = ", ".join(k for k in (layout.input_key, *sections) if k)
        raise ConfigError(
            f"unknown top-level key(s) {', '.join(map(repr, unknown))}; expected {expected}", source=source
        )
    problems: list[ConfigProblem] = []
    value = data.get(layout.input_key) if layout.input_key else None
    if value is not None and not isinstance(value, str):
        problems.append(ConfigProblem(str(layout.input_key), layout.input_hint or "expected a path"))
    value = input or value
    if layout.input_required and not value:
        problems.append(ConfigProblem(str(layout.input_key), layout.input_hint or "missing"))
    configs: dict[str, Any] = {}
    for name, cls in sections.items():
        settings = data.get(name) or {}
        if not isinstance(settings, Mapping):
            problems.append(
                ConfigProblem(name, f"expected a mapping of settings, got {type(settings).__name__}")
            )
            continue
        try:
            configs[name] = cls.from_dict({**settings, **overrides.get(name, {})})
        except ConfigError as exc:
            prefix = "" if flat or (name not in data and len(sections) == 1) else f"{name}."
            problems += [
                ConfigProblem(f"{prefix}{p.path}" if p.path else name, p.message) for p in exc.problems
            ]
    if problems:
        raise ConfigError(problems, source=source)
    return StageSettings(input=value, configs=configs)


# --- the config reference (docs/reference/config.md is generated from this) -----------------------------


def config_reference(cls: type[BaseConfig], *, heading: str = "##", seen: set[type] | None = None) -> str:
    """Markdown tables of ``cls``'s fields (key, type, default, description), then one section per nested
    config type. The docs build calls it, so the reference can't drift from the code."""
    seen = set() if seen is None else seen
    seen.add(cls)
    doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    lines = [
        f"{heading} `{cls.__name__}`",
        "",
        doc,
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
    ]
    nested: list[type[BaseConfig]] = []
    for name, field in cls.model_fields.items():
        key = field.alias or name
        kind = _type_name(field.annotation)
        if field.is_required():
            default = "required"
        elif _configs_in(field.annotation) and field.default_factory is not None:
            default = "(see below)"
        elif field.default_factory is not None:
            default = f"`{_plain(field.default_factory())}`"  # type: ignore[call-arg]
        else:
            default = f"`{_plain(field.default)}`"
        text = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{key}` | {kind} | {default} | {text} |")
        nested += [c for c in _configs_in(field.annotation) if c not in seen and c not in nested]
    out = "\n".join(lines) + "\n"
    for child in nested:
        if child not in seen:
            out += "\n" + config_reference(child, heading=heading, seen=seen)
    return out


def _configs_in(annotation: Any) -> list[type[BaseConfig]]:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseConfig):
        return [annotation]
    return [c for arg in typing.get_args(annotation) for c in _configs_in(arg)]


def _type_name(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    text = re.sub(r"\b(typing|collections\.abc|pathlib|bedrock_ft\.[\w.]+)\.", "", text)
    return "`" + text.replace("NoneType", "None").replace("|", "\\|") + "`"


def _plain(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "{}"
    if isinstance(value, str):
        return value or '""'
    return json.dumps(value, default=str)
