"""Typed configs: one pydantic base for every stage, loadable from YAML, TOML or JSON.

A config is frozen and refuses unknown keys. When it is wrong, :class:`~bedrock_ft.errors.ConfigError`
lists every problem at once, each with its dotted field path, so a YAML file is fixed in one pass.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from typing_extensions import Self

from bedrock_ft._io import atomic_write_text
from bedrock_ft.errors import ConfigError, ConfigProblem

__all__ = ["BaseConfig", "load_config_file", "load_stage_file", "parse_size"]

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
            raise _to_config_error(exc, type(self)) from None

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
            raise _to_config_error(exc, cls) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any) -> Self:
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            raise _to_config_error(exc, cls) from None

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


def _to_config_error(exc: ValidationError, model: type[BaseModel], source: str | None = None) -> ConfigError:
    problems: list[ConfigProblem] = []
    alternatives: dict[str, list[str]] = {}  # path -> what each union member expected
    for err in exc.errors(include_url=False):
        loc, parent, tagged = _resolve_loc(model, err["loc"])
        path = _format_loc(loc)
        message = _describe(err, parent)
        if not tagged:
            problems.append(ConfigProblem(path, message))
            continue
        # A union reports once per member: say it once, listing what each member expected.
        if path not in alternatives:
            problems.append(ConfigProblem(path, message))
            alternatives[path] = []
        alternatives[path].append(message)
    for path, messages in alternatives.items():
        if len(messages) > 1:
            bodies = [m.rsplit(" (got ", 1)[0] for m in messages]
            got = next((m.rsplit(" (got ", 1)[1] for m in messages if " (got " in m), None)
            text = "does not match any allowed type: " + "; or ".join(dict.fromkeys(bodies))
            i = next(i for i, p in enumerate(problems) if p.path == path)
            problems[i] = ConfigProblem(path, text + (f" (got {got}" if got else ""))
    return ConfigError(problems, source=source)


def _resolve_loc(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[tuple[int | str, ...], Any, bool]:
    """pydantic's error location without its union-member tags (``u.int``, ``u.str`` -> ``u``).

    Also returns the type holding the last part (the union member that actually failed, when a tag
    chose one), and whether a tag was dropped.
    """
    out: list[int | str] = []
    annotation: Any = model
    parent: Any = model
    tagged = False
    for part in loc:
        members = _union_members(annotation)
        if members is not None and isinstance(part, str):
            # A tag naming which member of a union failed, not a field: skip it and follow that member.
            annotation = next((m for m in members if _type_tag(m) == part), None)
            tagged = True
            continue
        out.append(part)
        parent = _unwrap_optional(annotation)
        annotation = _child_annotation(parent, part)
    return tuple(out), parent, tagged


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _union_members(annotation: Any) -> tuple[Any, ...] | None:
    annotation = _unwrap_optional(annotation)
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(a for a in get_args(annotation) if a is not type(None))
    return None


def _type_tag(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)


def _child_annotation(annotation: Any, part: int | str) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return field.annotation if field is not None else None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (list, tuple, set, frozenset, Sequence) and args:
        return args[0]
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    return None


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(err: Any, parent: Any) -> str:
    """A readable message; ``parent`` is the type that holds the failing key."""
    kind = err["type"]
    if kind == "extra_forbidden":
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            key = str(err["loc"][-1])
            allowed = sorted(parent.model_fields)
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown key{hint} (allowed: {', '.join(allowed)})"
        return "unknown key"
    message = str(err["msg"])
    if kind == "missing":
        return "required, but missing"
    if "input" in err and kind not in {"model_type", "dict_type"}:
        shown = repr(err["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        message = f"{message} (got {shown})"
    return message


def load_stage_file(
    path: str | Path,
    cls: type[C],
    *,
    input_key: str,
    section: str,
    input_hint: str,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[str | None, C]:
    """A stage command's config file: ``input_key`` (what the stage reads, optional) and the ``section``
    of settings, or the settings at the top level. ``overrides`` (command-line flags) are applied before
    validation, so the file may leave out what the flags give. Returns (input, config)."""
    data = load_config_file(path)
    source = str(path)
    if section not in data and input_key not in data:
        return None, cls.from_dict({**data, **(overrides or {})}, source=source)
    unknown = sorted(set(data) - {input_key, section})
    if unknown:
        raise ConfigError(
            f"unknown top-level key(s) {', '.join(map(repr, unknown))}; expected {input_key}, {section}",
            source=source,
        )
    settings = data.get(section) or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"'{section}' must be a mapping of settings", source=source)
    value = data.get(input_key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"'{input_key}': {input_hint}", source=source)
    return value, cls.from_dict({**settings, **(overrides or {})}, source=f"{source} ({section})")
