"""DatasetConfig: everything that decides what a dataset build produces."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from bedrock_ft.aws import AwsConfig
from bedrock_ft.chat_templates import check_template_reference
from bedrock_ft.config import BaseConfig, StageFile
from bedrock_ft.data._formats import get_format
from bedrock_ft.errors import RegistryError

__all__ = ["DATASET_LAYOUT", "DatasetConfig", "SplitSize"]

SplitSize = Annotated[float, Field(ge=0.0, le=1.0)] | Annotated[int, Field(ge=0)]
"""A split size: a fraction of the records (a float, 0.0 to 1.0) or a number of records (an int)."""

SourceType = Literal["auto", "hub", "jsonl", "json", "parquet", "csv", "disk"]


def _problem(message: str) -> PydanticCustomError:
    """A validation error reported as written (a plain ValueError gets a "Value error, " prefix)."""
    return PydanticCustomError("dataset_config", "{message}", {"message": message})


class DatasetConfig(BaseConfig):
    """How to turn raw records into templated SFT splits (``DatasetBuilder(config).build()``).

    The seed's recipe::

        DatasetConfig(source="Open-Orca/OpenOrca", format="openorca", id_contains="flan",
                      train_size=0.035, test_size=0.01, seed=42, output="s3://bucket/datasets/flan")
    """

    # --- where the records come from --------------------------------------------------------------
    source: str | None = Field(
        default=None,
        description="The raw records: a Hugging Face hub dataset id, a local file (.jsonl, .json, "
        ".parquet, .csv) or directory (data files, or a save_to_disk dataset), or an s3:// URI of a "
        "file or a prefix. Leave empty when passing records in memory: DatasetBuilder(config, source=...).",
    )
    source_type: SourceType = Field(
        default="auto",
        description="How to read `source`: auto (by suffix; an id that is no local path is a hub dataset), "
        "hub, jsonl, json, parquet, csv, or disk (a dataset saved with save_to_disk).",
    )
    hub_config: str | None = Field(
        default=None, description="Configuration (subset) name of a hub dataset, as load_dataset's `name`."
    )
    split: str = Field(
        default="train", description="Split to read from a hub dataset or a dataset directory."
    )
    format: str = Field(
        default="messages",
        description="Record format: openorca, alpaca, sharegpt, messages, qa, or one added with "
        "bedrock_ft.data.register_format.",
    )
    system_prompt: str | None = Field(
        default=None, description="System message given to every conversation that has none of its own."
    )
    category_field: str | None = Field(
        default=None,
        description="Raw field holding each record's category, for the evaluation file. Default: the "
        "format's own (the `category` field; for openorca, the id prefix such as flan or cot).",
    )

    # --- filters ----------------------------------------------------------------------------------
    id_field: str = Field(default="id", description="Raw field that id_contains and id_regex look at.")
    id_contains: str | None = Field(
        default=None, description="Keep only records whose id contains this text (the seed keeps 'flan')."
    )
    id_regex: str | None = Field(
        default=None, description="Keep only records whose id matches this regular expression (re.search)."
    )
    deduplicate: bool = Field(
        default=True, description="Drop records whose conversation exactly repeats an earlier one."
    )
    on_invalid: Literal["drop", "error"] = Field(
        default="drop",
        description="A record with a missing, non-string or empty field: drop and count it (drop), or stop "
        "with its index and field (error).",
    )

    # --- template and tokens -----------------------------------------------------------------------
    tokenizer: str | None = Field(
        default=None,
        description="Tokenizer for token statistics, the length filter and the default chat template: a "
        "local model directory, a hub id, or 'embedded' (the bundled SmolLM2). Default: none.",
    )
    chat_template: str | None = Field(
        default=None,
        description="Chat template: a built-in name (mistral, llama3, chatml, human_assistant), a Jinja "
        "string, or a .jinja file. Default: the tokenizer's own.",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Drop records longer than this many tokens (templated, with `tokenizer`).",
    )
    max_length: int = Field(
        default=2048, ge=1, description="Training max_length; statistics report the share of records over it."
    )
    text_column: bool = Field(
        default=False, description="Also write each record rendered with the chat template, as `text`."
    )

    # --- splits -----------------------------------------------------------------------------------
    train_size: SplitSize | None = Field(
        default=None,
        description="Training split: a fraction (float) or a number of records (int). Default: the rest.",
    )
    test_size: SplitSize = Field(
        default=0.1, description="Test split: a fraction (float) or a number of records (int); 0 for none."
    )
    seed: int = Field(default=42, description="Seed of the shuffle; the same seed gives the same splits.")

    # --- output -----------------------------------------------------------------------------------
    output: str = Field(description="Local directory or s3:// prefix to write the splits and manifest to.")
    overwrite: bool = Field(default=False, description="Replace a previous build at `output`.")
    eval_file: bool = Field(
        default=True, description="Also write the test split as fmeval-ready JSONL (question, answer)."
    )
    report_dropped: int = Field(
        default=3, ge=0, le=100, description="How many dropped records to list per reason in the artifact."
    )
    work_dir: str | None = Field(
        default=None,
        description="Where intermediate Arrow files go (deleted afterwards). Default: the system temp dir.",
    )
    batch_size: int = Field(default=1000, ge=1, description="Records processed per batch.")
    aws: AwsConfig = Field(default_factory=AwsConfig, description="AWS access for s3:// sources and outputs.")

    hash_exclude = frozenset({"output", "overwrite", "report_dropped", "work_dir", "batch_size", "aws"})

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        try:
            get_format(value)
        except RegistryError as exc:
            raise _problem(str(exc)) from None
        return value

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_template_reference(value)
            except ValueError as exc:
                raise _problem(str(exc)) from None
        return value

    @field_validator("id_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise _problem(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("output")
    @classmethod
    def _valid_output(cls, value: str) -> str:
        if not value.strip():
            raise _problem("must name a directory or an s3:// prefix")
        if value.startswith("s3://") and not value[5:].split("/", 1)[0]:
            raise _problem("an s3:// output needs a bucket: s3://bucket/prefix")
        return value

    @field_validator("source")
    @classmethod
    def _valid_source(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise _problem("must not be empty (leave it out to pass records in memory)")
        if value is not None and value.startswith("s3://") and not value[5:].split("/", 1)[0]:
            raise _problem("an s3:// source needs a bucket: s3://bucket/key")
        return value

    @field_validator("train_size")
    @classmethod
    def _train_not_zero(cls, value: float | int | None) -> float | int | None:
        if value is not None and value == 0:
            raise _problem("must be more than 0 (leave it out for all records not in the test split)")
        return value

    @field_validator("test_size")
    @classmethod
    def _sizes_fit(cls, value: float | int, info: ValidationInfo) -> float | int:
        train = info.data.get("train_size")
        if isinstance(train, float) and isinstance(value, float) and train + value > 1.0 + 1e-12:
            raise _problem(f"train_size ({train}) and test_size ({value}) add up to more than 1")
        return value

    @field_validator("max_tokens")
    @classmethod
    def _tokens_need_a_tokenizer(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("tokenizer") is None:
            raise _problem("counting tokens needs `tokenizer`")
        return value

    @field_validator("text_column")
    @classmethod
    def _text_needs_a_template(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("tokenizer") is None and info.data.get("chat_template") is None:
            raise _problem("rendering `text` needs `chat_template` or `tokenizer`")
        return value


DATASET_LAYOUT = StageFile(sections={"dataset": DatasetConfig})
"""A ``bedrock-ft dataset build`` config file: the ``dataset`` section, or its fields alone."""
