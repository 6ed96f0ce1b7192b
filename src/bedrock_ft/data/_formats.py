"""Record formats: how a raw record becomes a chat conversation.

A format is one function from a raw record (a mapping) to a list of ``{"role", "content"}`` messages.
The built-ins register themselves with the same call third parties use, :func:`register_format`::

    from bedrock_ft.data import InvalidRecord, register_format, text_field

    def dolly(record):
        context = text_field(record, "context", required=False)
        question = text_field(record, "instruction")
        user = f"{context}\\n\\n{question}" if context else question
        return [{"role": "user", "content": user},
                {"role": "assistant", "content": text_field(record, "response", assistant=True)}]

    register_format("dolly", dolly)

A record that can't be used is reported by raising :class:`InvalidRecord` (the helpers below do it with
the right reason and field); the builder then drops and counts it, or stops, as ``on_invalid`` says.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bedrock_ft.errors import RegistryError

__all__ = [
    "ROLES",
    "CategoryFn",
    "FormatFn",
    "InvalidRecord",
    "Message",
    "RecordFormat",
    "check_messages",
    "get_format",
    "list_formats",
    "register_format",
    "text_field",
    "unregister_format",
]

Message = dict[str, str]
FormatFn = Callable[[Mapping[str, Any]], list[Message]]
CategoryFn = Callable[[Mapping[str, Any]], "str | None"]

ROLES = ("system", "user", "assistant")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class UnreadableLine:
    """What a source yields for a line it can't parse (a truncated last line of an interrupted download):
    the processor drops and counts it under ``on_invalid="drop"`` and stops under ``"error"``."""

    __slots__ = ("detail", "where")

    def __init__(self, where: str, detail: str) -> None:
        self.where = where  # "<file>: line <n>"
        self.detail = detail  # what is wrong with it


class InvalidRecord(Exception):
    """A record a format can't turn into a conversation.

    ``reason`` is a short, stable code used to count drops (``missing_field``, ``not_a_string``,
    ``empty_field``, ``empty_assistant``, ``invalid_record``); ``field`` names the offending field.
    """

    def __init__(self, reason: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.message = message


def text_field(
    record: Mapping[str, Any], name: str, *, required: bool = True, assistant: bool = False
) -> str:
    """The string in ``record[name]``, stripped of nothing, checked.

    Missing (or None) raises ``missing_field`` when ``required``, else returns "". A non-string raises
    ``not_a_string``. Blank text raises ``empty_assistant`` for the assistant turn (``assistant=True``)
    and ``empty_field`` for other required fields; optional fields may be blank.
    """
    value = record.get(name)
    if value is None:
        if required:
            raise InvalidRecord("missing_field", name, "missing")
        return ""
    if not isinstance(value, str):
        raise InvalidRecord("not_a_string", name, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        if assistant:
            raise InvalidRecord("empty_assistant", name, "the assistant turn is empty or whitespace")
        if required:
            raise InvalidRecord("empty_field", name, "empty or whitespace")
    return value


def check_messages(
    messages: Any, field: str = "messages", *, role_key: str = "role", content_key: str = "content"
) -> list[Message]:
    """Validate a conversation: known roles, string contents, a user turn, and a non-blank assistant
    turn at the end. Blank system messages are dropped. Returns clean ``{"role", "content"}`` dicts.

    ``field``, ``role_key`` and ``content_key`` only name things in errors, as the source spells them.
    """
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        raise InvalidRecord(
            "invalid_record", field, f"expected a list of messages, got {type(messages).__name__}"
        )
    out: list[Message] = []
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidRecord(
                "invalid_record", where, f"expected a message object, got {type(message).__name__}"
            )
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InvalidRecord(
                "invalid_record", f"{where}.{role_key}", f"unknown role {role!r}; use one of {ROLES}"
            )
        if content is None:
            raise InvalidRecord("missing_field", f"{where}.{content_key}", "missing")
        if not isinstance(content, str):
            raise InvalidRecord(
                "not_a_string", f"{where}.{content_key}", f"expected a string, got {type(content).__name__}"
            )
        if role == "system":
            if not content.strip():
                continue
            if out:
                raise InvalidRecord(
                    "invalid_record", f"{where}.{role_key}", "a system message must come first"
                )
        elif not content.strip():
            reason = "empty_assistant" if role == "assistant" else "empty_field"
            raise InvalidRecord(reason, f"{where}.{content_key}", f"the {role} turn is empty or whitespace")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "user" for m in out):
        raise InvalidRecord("missing_field", field, "no user turn")
    if out[-1]["role"] != "assistant":
        raise InvalidRecord("missing_field", field, "the conversation does not end with an assistant turn")
    return out


def _conversation(system: str, user: str, assistant: str) -> list[Message]:
    out = [{"role": "system", "content": system}] if system.strip() else []
    return [*out, {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


# --- built-in formats -------------------------------------------------------------------------------


def openorca(record: Mapping[str, Any]) -> list[Message]:
    """OpenOrca: ``system_prompt`` (optional, often empty), ``question``, ``response``."""
    system = text_field(record, "system_prompt", required=False)
    question = text_field(record, "question")
    response = text_field(record, "response", assistant=True)
    return _conversation(system, question, response)


def _openorca_category(record: Mapping[str, Any]) -> str | None:
    """OpenOrca ids name their source collection: ``flan.123`` -> ``flan``, ``cot.7`` -> ``cot``."""
    rid = record.get("id")
    if isinstance(rid, str) and "." in rid:
        return rid.split(".", 1)[0]
    return _category_field(record)


def alpaca(record: Mapping[str, Any]) -> list[Message]:
    """Alpaca: ``instruction``, optional ``input`` (appended to the instruction), ``output``."""
    instruction = text_field(record, "instruction")
    extra = text_field(record, "input", required=False)
    output = text_field(record, "output", assistant=True)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return _conversation("", user, output)


_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
}


def sharegpt(record: Mapping[str, Any]) -> list[Message]:
    """ShareGPT: ``conversations``, a list of ``{"from": human|gpt|system, "value": text}``."""
    turns = record.get("conversations")
    if turns is None:
        raise InvalidRecord("missing_field", "conversations", "missing")
    if not isinstance(turns, Sequence) or isinstance(turns, str | bytes):
        raise InvalidRecord("invalid_record", "conversations", f"expected a list, got {type(turns).__name__}")
    messages: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping):
            raise InvalidRecord("invalid_record", f"conversations[{i}]", "expected an object with from/value")
        speaker = turn.get("from")
        role = _SHAREGPT_ROLES.get(speaker.lower()) if isinstance(speaker, str) else None
        if role is None:
            raise InvalidRecord(
                "invalid_record",
                f"conversations[{i}].from",
                f"unknown speaker {speaker!r}; use one of {sorted(_SHAREGPT_ROLES)}",
            )
        messages.append({"role": role, "content": turn.get("value")})
    return check_messages(messages, "conversations", role_key="from", content_key="value")


def messages_format(record: Mapping[str, Any]) -> list[Message]:
    """OpenAI-style chat: ``messages``, a list of ``{"role": system|user|assistant, "content": text}``."""
    messages = record.get("messages")
    if messages is None:
        raise InvalidRecord("missing_field", "messages", "missing")
    return check_messages(messages, "messages")


def qa(record: Mapping[str, Any]) -> list[Message]:
    """Question answering: ``question``, ``answer``, optional ``context`` (put before the question)."""
    context = text_field(record, "context", required=False)
    question = text_field(record, "question")
    answer = text_field(record, "answer", assistant=True)
    user = f"{context}\n\n{question}" if context.strip() else question
    return _conversation("", user, answer)


def _category_field(record: Mapping[str, Any]) -> str | None:
    value = record.get("category")
    return value if isinstance(value, str) and value.strip() else None


# --- the registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordFormat:
    """A registered format: its name, the record -> messages function, and where a category comes from."""

    name: str
    fn: FormatFn
    category: CategoryFn = _category_field
    description: str = ""


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, RecordFormat] = {}

    def register(self, fmt: RecordFormat, *, replace: bool) -> RecordFormat:
        if not isinstance(fmt.name, str) or not _NAME_RE.match(fmt.name):
            raise RegistryError(
                f"format name {fmt.name!r} is malformed: use lowercase letters, digits and '_', "
                "starting with a letter (at most 64 characters)"
            )
        if not callable(fmt.fn):
            raise RegistryError(f"format {fmt.name!r}: expected a function, got {type(fmt.fn).__name__}")
        with self._lock:
            if fmt.name in self._by_name and not replace:
                raise RegistryError(
                    f"format {fmt.name!r} is already registered; pass replace=True to override it"
                )
            self._by_name[fmt.name] = fmt
        return fmt

    def unregister(self, name: str) -> RecordFormat:
        with self._lock:
            try:
                return self._by_name.pop(name)
            except KeyError:
                raise RegistryError(f"format {name!r} is not registered") from None

    def get(self, name: str) -> RecordFormat:
        with self._lock:
            found = self._by_name.get(name)
            if found is None:
                known = ", ".join(sorted(self._by_name))
                raise RegistryError(
                    f"unknown record format {name!r}; known formats: {known}. "
                    "Add one with bedrock_ft.data.register_format(name, fn)"
                )
            return found

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._by_name))


_registry = _Registry()


def register_format(
    name: str,
    fn: FormatFn,
    *,
    category: CategoryFn | None = None,
    description: str | None = None,
    replace: bool = False,
) -> RecordFormat:
    """Register a record format: ``fn(record) -> [{"role": ..., "content": ...}, ...]``.

    ``category`` optionally picks each record's category for the evaluation file (default: the
    record's ``category`` field, when it is a string). Refuses a malformed or taken name.
    """
    doc = description if description is not None else (fn.__doc__ or "").strip().split("\n")[0]
    fmt = RecordFormat(name=name, fn=fn, category=category or _category_field, description=doc)
    return _registry.register(fmt, replace=replace)


def unregister_format(name: str) -> RecordFormat:
    """Remove a registered format (mainly for tests and plugin development)."""
    return _registry.unregister(name)


def get_format(name: str) -> RecordFormat:
    """A registered format by name; an unknown name raises RegistryError listing the known ones."""
    return _registry.get(name)


def list_formats() -> tuple[str, ...]:
    """Names of every registered format, sorted."""
    return _registry.names()


register_format("openorca", openorca, category=_openorca_category)
register_format("alpaca", alpaca)
register_format("sharegpt", sharegpt)
register_format("messages", messages_format)
register_format("qa", qa)
