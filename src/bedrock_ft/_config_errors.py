"""Turning pydantic's validation errors into one :class:`~bedrock_ft.errors.ConfigError` whose problems
name each field by its dotted path, with a type tag for union members and "did you mean" for typos."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from bedrock_ft.errors import ConfigError, ConfigProblem

__all__ = ["to_config_error"]


def to_config_error(exc: ValidationError, model: type[BaseModel], source: str | None = None) -> ConfigError:
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
            allowed = sorted(f.alias or n for n, f in parent.model_fields.items())
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
