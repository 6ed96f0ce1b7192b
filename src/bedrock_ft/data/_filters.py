"""What decides whether a record is kept: id filters, a predicate, validity, duplicates, token length.

:class:`RecordProcessor` turns a batch of raw records into kept conversations, and counts each record
it leaves out in a :class:`DropLog` under one reason:

============== ===========================================================================
reason         why
============== ===========================================================================
id_filter      the id does not contain ``id_contains`` / match ``id_regex``
predicate      the builder's ``predicate(record)`` returned false
missing_field  a required field is absent (or null); also: no user or final assistant turn
not_a_string   a field that must be text is a number, list, ...
empty_field    a required field other than the assistant turn is blank
empty_assistant the assistant turn is empty or whitespace
invalid_record the record is not an object, or its conversation is malformed
invalid_json   a JSON Lines line that does not parse (a truncated last line, a corrupt one)
template_error the chat template refused the conversation (e.g. roles that don't alternate)
duplicate      the conversation exactly repeats an earlier kept one
too_long       longer than ``max_tokens`` tokens once templated
============== ===========================================================================

Validity reasons obey ``on_invalid``: drop and count (default) or stop with a DatasetError naming the
record index and field. Filters never raise.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bedrock_ft.artifacts import DroppedRecord
from bedrock_ft.data._formats import InvalidRecord, Message, RecordFormat, UnreadableLine, check_messages
from bedrock_ft.errors import DatasetError

__all__ = ["FILTER_REASONS", "INVALID_REASONS", "DropLog", "IdFilter", "ProcessedBatch", "RecordProcessor"]

INVALID_REASONS = (
    "missing_field",
    "not_a_string",
    "empty_field",
    "empty_assistant",
    "invalid_record",
    "template_error",
)
FILTER_REASONS = ("id_filter", "predicate", "duplicate", "too_long")

Predicate = Callable[[Mapping[str, Any]], bool]


@dataclass
class DropLog:
    """Dropped records: a count per reason and the first ``keep_examples`` of each."""

    keep_examples: int = 3
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[DroppedRecord]] = field(default_factory=dict)

    def add(self, reason: str, index: int, field_name: str | None, detail: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.keep_examples:
            shown.append(DroppedRecord(index=index, field=field_name, detail=detail))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return ", ".join(f"{reason} {count}" for reason, count in sorted(self.counts.items())) or "none"


@dataclass(frozen=True)
class IdFilter:
    """Keep records whose id field contains ``contains`` and matches ``regex`` (either may be unset)."""

    field: str = "id"
    contains: str | None = None
    regex: str | None = None

    @property
    def active(self) -> bool:
        return self.contains is not None or self.regex is not None

    def reject(self, record: Mapping[str, Any]) -> tuple[str, str] | None:
        """None to keep the record, else ``(reason, detail)``. A missing or non-text id is invalid."""
        value = record.get(self.field)
        if value is None:
            raise InvalidRecord("missing_field", self.field, "missing (needed by the id filter)")
        if not isinstance(value, str):
            if not isinstance(value, int):
                raise InvalidRecord("not_a_string", self.field, f"expected an id, got {type(value).__name__}")
            value = str(value)
        if self.contains is not None and self.contains not in value:
            return "id_filter", f"id {value!r} does not contain {self.contains!r}"
        if self.regex is not None and not re.search(self.regex, value):
            return "id_filter", f"id {value!r} does not match {self.regex!r}"
        return None


def conversation_key(messages: Sequence[Message]) -> int:
    """A 64-bit fingerprint of a conversation, for exact-duplicate removal."""
    blob = "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in messages).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "little")


@dataclass
class ProcessedBatch:
    """Kept records of one batch, as columns."""

    messages: list[list[Message]] = field(default_factory=list)
    category: list[str | None] = field(default_factory=list)
    text: list[str | None] = field(default_factory=list)
    n_tokens: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.messages)


_FORMAT_BUGS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


@dataclass
class RecordProcessor:
    """Raw records in, kept conversations out. One instance per build (it remembers what it has seen)."""

    fmt: RecordFormat
    drops: DropLog
    id_filter: IdFilter = field(default_factory=IdFilter)
    predicate: Predicate | None = None
    system_prompt: str | None = None
    category_field: str | None = None
    deduplicate: bool = True
    render: Callable[[Sequence[Message]], str] | None = None
    tokenizer: Any = None
    max_tokens: int | None = None
    keep_text: bool = False
    on_invalid: str = "drop"
    _seen: set[int] = field(default_factory=set, repr=False)

    def process(self, batch: Sequence[tuple[int, Any, str | None]]) -> ProcessedBatch:
        """``batch`` holds ``(index, record, location)``; returns the records kept, in order."""
        pending: list[tuple[int, list[Message], str | None, str | None]] = []
        for index, record, location in batch:
            try:
                kept = self._one(index, record, location)
            except InvalidRecord as exc:
                self._invalid(index, location, exc)
                continue
            if kept is not None:
                pending.append((index, *kept))

        out = ProcessedBatch()
        lengths = self._count_tokens([text for _, _, _, text in pending])
        for (index, messages, category, text), n in zip(pending, lengths, strict=True):
            if self.max_tokens is not None and n is not None and n > self.max_tokens:
                self.drops.add("too_long", index, None, f"{n} tokens, more than max_tokens={self.max_tokens}")
                continue
            out.messages.append(messages)
            out.category.append(category)
            out.text.append(text if self.keep_text else None)
            out.n_tokens.append(n)
        return out

    def _one(
        self, index: int, record: Any, location: str | None
    ) -> tuple[list[Message], str | None, str | None] | None:
        if isinstance(record, UnreadableLine):
            if self.on_invalid == "error":
                message = f"{record.where}: {record.detail}; set on_invalid='drop' to skip such lines"
                raise DatasetError(message, record_index=index)
            raise InvalidRecord("invalid_json", None, record.detail)
        if not isinstance(record, Mapping):
            raise InvalidRecord("invalid_record", None, f"expected an object, got {type(record).__name__}")
        if self.id_filter.active and (rejected := self.id_filter.reject(record)) is not None:
            self.drops.add(rejected[0], index, self.id_filter.field, rejected[1])
            return None
        if self.predicate is not None:
            try:
                keep = self.predicate(record)
            except Exception as exc:
                raise DatasetError(
                    f"the predicate raised {type(exc).__name__}: {exc}", record_index=index
                ) from exc
            if not keep:
                self.drops.add("predicate", index, None, "the predicate returned false")
                return None
        messages = self._messages(record)
        if self.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        category = self._category(record)
        if self.deduplicate:
            key = conversation_key(messages)
            if key in self._seen:
                self.drops.add("duplicate", index, None, "repeats an earlier record exactly")
                return None
            self._seen.add(key)
        text = None
        if self.render is not None:
            try:
                text = self.render(messages)
            except Exception as exc:
                if not type(exc).__module__.startswith("jinja2"):
                    raise
                raise InvalidRecord(
                    "template_error", "messages", f"the chat template refused it: {exc}"
                ) from None
        return messages, category, text

    def _messages(self, record: Mapping[str, Any]) -> list[Message]:
        try:
            produced = self.fmt.fn(record)
        except InvalidRecord:
            raise
        except KeyError as exc:
            name = exc.args[0] if exc.args else None
            raise InvalidRecord("missing_field", str(name) if name is not None else None, "missing") from None
        except _FORMAT_BUGS as exc:
            raise InvalidRecord(
                "invalid_record", None, f"format {self.fmt.name!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        return check_messages(produced)

    def _category(self, record: Mapping[str, Any]) -> str | None:
        if self.category_field is not None:
            value = record.get(self.category_field)
            return value if isinstance(value, str) and value.strip() else None
        return self.fmt.category(record)

    def _invalid(self, index: int, location: str | None, exc: InvalidRecord) -> None:
        where = f" ({location})" if location else ""
        if self.on_invalid == "error":
            raise DatasetError(
                f"{exc.message}{where}; set on_invalid='drop' to skip such records",
                record_index=index,
                field=exc.field,
            )
        self.drops.add(exc.reason, index, exc.field, f"{exc.message}{where}")

    def _count_tokens(self, texts: list[str | None]) -> list[int | None]:
        if self.tokenizer is None or not texts:
            return [None] * len(texts)
        batch = [t or "" for t in texts]
        # A fast tokenizer's Rust backend counts without building offsets and token strings:
        # the same ids, less time and memory than the full __call__.
        backend: Any = getattr(self.tokenizer, "backend_tokenizer", None)
        if hasattr(backend, "encode_batch_fast"):
            return [len(e.ids) for e in backend.encode_batch_fast(batch, add_special_tokens=False)]
        encoded = self.tokenizer(batch, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        return [len(ids) for ids in encoded]
