"""Reading evaluation records: JSON Lines from a file, an ``s3://`` URI or a DatasetArtifact, with each
field found at a key or a JMESPath location. Every problem names the file, the line and the field."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import DatasetError

if TYPE_CHECKING:
    from bedrock_ft.artifacts import DatasetArtifact
    from bedrock_ft.evaluation._config import EvalConfig

__all__ = ["EvalRecord", "Location", "compile_location", "load_records", "source_name"]


@dataclass(frozen=True)
class EvalRecord:
    """One question to ask and the answer(s) expected; ``line`` is 1-based in the source file."""

    index: int
    line: int
    question: str
    target: str
    category: str | None = None
    system: str | None = None


class Location:
    """A field location: a plain key, or a JMESPath expression (``answer.value``, ``answers[0]``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._expr: Any = None
        if not _is_plain_key(text):
            import jmespath
            from jmespath.exceptions import JMESPathError

            try:
                self._expr = jmespath.compile(text)
            except JMESPathError as exc:
                raise ValueError(f"{text!r} is not a key or a JMESPath location: {exc}") from None

    def find(self, record: dict[str, Any]) -> Any:
        if self._expr is None:
            return record.get(self.text)
        return self._expr.search(record)


def _is_plain_key(text: str) -> bool:
    return bool(text) and not any(c in text for c in ".[]|*@&`'\"(){},:!<>=") and not text[0].isdigit()


def compile_location(text: str) -> Location:
    if not text.strip():
        raise ValueError("a location may not be empty")
    return Location(text)


def source_name(source: str | Path) -> str:
    """A short name for a dataset file: its stem (``eval_dataset`` for ``.../eval_dataset.jsonl``)."""
    name = str(source).rstrip("/").rsplit("/", 1)[-1]
    return name.split(".", 1)[0] or name


def _read_bytes(uri: str, config: EvalConfig) -> bytes:
    if uri.startswith("s3://"):
        from bedrock_ft.aws import AwsConfig
        from bedrock_ft.errors import ResourceNotFoundError, translate_client_errors

        bucket, _, key = uri[len("s3://") :].partition("/")
        try:
            with translate_client_errors():
                body = (config.aws or AwsConfig()).client("s3").get_object(Bucket=bucket, Key=key)["Body"]
                return bytes(body.read())
        except ResourceNotFoundError as exc:
            raise DatasetError(f"{uri}: no such dataset file ({exc})") from None
    path = Path(uri)
    if not path.is_file():
        raise DatasetError(f"{uri}: no such dataset file")
    return path.read_bytes()


def dataset_uri(dataset: DatasetArtifact | str | Path) -> tuple[str, bool]:
    """The file to read and whether it holds chat ``messages`` (a test split) rather than fmeval rows."""
    from bedrock_ft.artifacts import DatasetArtifact

    text = str(dataset)
    if not isinstance(dataset, DatasetArtifact) and not text.startswith("s3://"):
        path = Path(text).expanduser()
        if path.is_dir() or path.name == "manifest.json":  # the dataset stage's output
            dataset = DatasetArtifact.from_input(path) or dataset
    if isinstance(dataset, DatasetArtifact):
        if dataset.eval_uri:
            return dataset.eval_uri, False
        if dataset.test_uri:
            return dataset.test_uri, True
        raise DatasetError("the dataset artifact has no test split to evaluate on (eval_uri and test_uri)")
    return str(dataset), False


def _lines(data: bytes, uri: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError as exc:
            raise DatasetError(f"{uri} line {number}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise DatasetError(
                f"{uri} line {number}: a record must be a JSON object, got {type(row).__name__}"
            )
        yield number, row


def _from_messages(row: dict[str, Any], uri: str, number: int) -> dict[str, Any]:
    from bedrock_ft.data import eval_record

    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _error(f"{uri} line {number}: no 'messages' list in this test-split record", field="messages")
    try:
        return eval_record(messages, row.get("category"))
    except (KeyError, StopIteration, TypeError):
        raise _error(
            f"{uri} line {number}: the conversation has no user turn and final answer", field="messages"
        ) from None


def _error(message: str, *, field: str | None = None, record_index: int | None = None) -> DatasetError:
    """A DatasetError whose message already says where (file and line); the index and field ride along."""
    error = DatasetError(message)
    error.field, error.record_index = field, record_index
    return error


def _suggest(value: dict[str, Any], location: str) -> str:
    """A location inside ``value`` that holds text: 'value' or 'text' first, then any key holding text."""

    def texty(v: Any) -> bool:
        return isinstance(v, str) or (isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v))

    keys = [k for k in ("value", "text", "answer") if texty(value.get(k))]
    keys += [k for k in sorted(value) if texty(value[k]) and k not in keys]
    return f"; point the location at the text inside it, e.g. '{location}.{keys[0]}'" if keys else ""


def _text(value: Any, *, what: str, where: str, location: str, delimiter: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise _error(f"{where}: the {what} at {location!r} is a boolean, not text", field=location)
    if isinstance(value, (int, float)):
        return str(value)
    alternatives = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
    if alternatives and what == "target":  # alternatives, as fmeval writes them
        return delimiter.join(value)
    if isinstance(value, dict):
        kind, hint = "an object with keys " + ", ".join(sorted(value)), _suggest(value, location)
    elif isinstance(value, list):
        kind, hint = "a list", "" if what != "target" else " (alternatives must be a list of strings)"
    else:
        kind, hint = type(value).__name__, ""
    raise _error(f"{where}: the {what} at {location!r} is {kind}, not text{hint}", field=location)


def load_records(dataset: DatasetArtifact | str | Path, config: EvalConfig) -> tuple[str, list[EvalRecord]]:
    """Read and check every record; returns the source URI and the records (at most ``max_records``)."""
    uri, chat = dataset_uri(dataset)
    data = _read_bytes(uri, config)
    question_at = compile_location(config.question_location)
    target_at = compile_location(config.target_location)
    category_at = compile_location(config.category_location) if config.category_location else None
    system_at = compile_location(config.system_location) if config.system_location else None
    records: list[EvalRecord] = []
    for number, raw in _lines(data, uri):
        if config.max_records is not None and len(records) >= config.max_records:
            break
        row = _from_messages(raw, uri, number) if chat else raw
        where = f"{uri} line {number}"
        fields: dict[str, str | None] = {}
        for what, at in (("question", question_at), ("target", target_at)):
            value = at.find(row)
            if value is None or value == "":
                setting = f"{what}_location"
                raise _error(
                    f"{where}: no {what} at {at.text!r} (EvalConfig.{setting}); the record has keys "
                    f"{sorted(row)}",
                    record_index=len(records),
                    field=at.text,
                )
            fields[what] = _text(
                value, what=what, where=where, location=at.text, delimiter=config.target_delimiter
            )
        for what, opt in (("category", category_at), ("system", system_at)):
            value = opt.find(row) if opt is not None else None
            fields[what] = (
                None
                if value in (None, "")
                else _text(value, what=what, where=where, location=opt.text, delimiter="")  # type: ignore[union-attr]
            )
        records.append(
            EvalRecord(
                index=len(records),
                line=number,
                question=str(fields["question"]),
                target=str(fields["target"]),
                category=fields["category"],
                system=fields["system"],
            )
        )
    if not records:
        raise DatasetError(f"{uri}: the dataset is empty (no records to evaluate)")
    return uri, records


def categories(records: Sequence[EvalRecord]) -> list[str]:
    return sorted({r.category for r in records if r.category is not None})
