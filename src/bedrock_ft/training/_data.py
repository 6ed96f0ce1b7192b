"""Reading a DatasetArtifact's training split, checked record by record before any model loads."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import DatasetError, TrainingError

if TYPE_CHECKING:
    from bedrock_ft.artifacts import DatasetArtifact
    from bedrock_ft.aws import AwsConfig

__all__ = ["check_generation_template", "load_messages", "local_copy"]

_ROLES = {"system", "user", "assistant", "tool"}


def local_copy(uri: str, work_dir: Path, aws: AwsConfig | None = None) -> Path:
    """A local path for ``uri``: itself, or a download of an s3:// object into ``work_dir``."""
    if not uri.startswith("s3://"):
        path = Path(uri)
        if not path.is_file():
            raise DatasetError(
                f"{uri}: the dataset's training file is missing (rebuild the dataset, or fix train_uri "
                "in its manifest.json)",
                field="train_uri",
            )
        return path
    from bedrock_ft.aws import AwsConfig
    from bedrock_ft.errors import AwsError, translate_client_errors

    bucket, _, key = uri[len("s3://") :].partition("/")
    work_dir.mkdir(parents=True, exist_ok=True)
    target = work_dir / Path(key).name
    try:
        with translate_client_errors():
            (aws or AwsConfig()).client("s3").download_file(bucket, key, str(target))
    except AwsError as exc:
        raise DatasetError(f"{uri}: can't download the training file: {exc}", field="train_uri") from exc
    return target


def load_messages(
    artifact: DatasetArtifact, *, work_dir: Path | None = None, aws: AwsConfig | None = None
) -> list[dict[str, Any]]:
    """Every training record as ``{"messages": [...]}``; the first bad record stops it, named by file
    and line."""
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        path = local_copy(artifact.train_uri, Path(tmp), aws)
        records = _read(path, artifact.train_uri)
    if not records:
        raise DatasetError(f"{artifact.train_uri}: the training split is empty", field="train_uri")
    return records


def _read(path: Path, label: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            where = f"{label} line {lineno}"
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{where}: not valid JSON ({exc})", record_index=len(records)) from None
            messages = _check_messages(
                record.get("messages") if isinstance(record, Mapping) else None, where, len(records)
            )
            records.append({"messages": [{"role": m["role"], "content": m["content"]} for m in messages]})
    return records


def _check_messages(messages: Any, where: str, index: int) -> list[Mapping[str, str]]:
    if messages is None:
        raise DatasetError(
            f"{where}: no 'messages' (the trainer takes chat records; build the data with DatasetBuilder)",
            record_index=index,
            field="messages",
        )
    if not isinstance(messages, list) or not messages:
        raise DatasetError(
            f"{where}: 'messages' must be a non-empty list", record_index=index, field="messages"
        )
    for i, m in enumerate(messages):
        if (
            not isinstance(m, Mapping)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise DatasetError(
                f"{where}: messages[{i}] must be an object with string 'role' and 'content'",
                record_index=index,
                field=f"messages[{i}]",
            )
        if m["role"] not in _ROLES:
            raise DatasetError(
                f"{where}: messages[{i}] has role {m['role']!r}; expected one of {sorted(_ROLES)}",
                record_index=index,
                field=f"messages[{i}].role",
            )
    if not any(m["role"] == "assistant" for m in messages):
        raise DatasetError(
            f"{where}: no assistant message to learn from", record_index=index, field="messages"
        )
    return messages


def check_generation_template(template: str | None, template_name: str | None, tokenizer: Any) -> None:
    """assistant_only_loss needs ``{% generation %}`` blocks, which trl turns into the loss mask."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if template and has_generation_markers(template):
        return
    probe = tokenizer
    try:
        if get_training_chat_template(probe) is not None:
            return  # trl knows this template and supplies a marked-up copy for the mask
    except Exception:
        pass
    from bedrock_ft.chat_templates import BUILTIN_TEMPLATES

    label = repr(template_name) if template_name else "of this dataset"
    raise TrainingError(
        "assistant_only_loss=True needs a chat template that marks the assistant's turns with "
        "{% generation %}...{% endgeneration %}, so trl knows which tokens to learn; the template "
        f"{label} has no such block. Fix it one of three ways: rebuild the dataset with a built-in "
        f"template that has them ({', '.join(BUILTIN_TEMPLATES)}); wrap the assistant content (and its "
        "end-of-turn token) of your template in {% generation %}...{% endgeneration %}; or set "
        "assistant_only_loss=False to learn from whole conversations."
    )
