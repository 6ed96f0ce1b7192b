"""DatasetBuilder: from raw QA data to templated SFT splits, locally or in S3.

Importing this package is light: ``datasets``, ``pyarrow``, ``transformers`` and ``jinja2`` are
imported only when a build runs. See docs/dataset.md.
"""

from __future__ import annotations

from bedrock_ft.chat_templates import (
    ChatTemplate,
    get_chat_template,
    list_chat_templates,
    register_chat_template,
    resolve_chat_template,
)
from bedrock_ft.data._builder import DatasetBuilder
from bedrock_ft.data._config import DATASET_LAYOUT, DatasetConfig
from bedrock_ft.data._filters import DropLog, IdFilter
from bedrock_ft.data._formats import (
    InvalidRecord,
    RecordFormat,
    check_messages,
    get_format,
    list_formats,
    register_format,
    text_field,
    unregister_format,
)
from bedrock_ft.data._report import summarize
from bedrock_ft.data._splits import split_counts
from bedrock_ft.data._synthetic import build_synthetic_dataset, synthetic_openorca, synthetic_qa
from bedrock_ft.data._writers import EVAL_FILE, TEST_FILE, TRAIN_FILE, eval_record

__all__ = [
    "DATASET_LAYOUT",
    "EVAL_FILE",
    "TEST_FILE",
    "TRAIN_FILE",
    "ChatTemplate",
    "DatasetBuilder",
    "DatasetConfig",
    "DropLog",
    "IdFilter",
    "InvalidRecord",
    "RecordFormat",
    "build_synthetic_dataset",
    "check_messages",
    "eval_record",
    "get_chat_template",
    "get_format",
    "list_chat_templates",
    "list_formats",
    "register_chat_template",
    "register_format",
    "resolve_chat_template",
    "split_counts",
    "summarize",
    "synthetic_openorca",
    "synthetic_qa",
    "text_field",
    "unregister_format",
]
