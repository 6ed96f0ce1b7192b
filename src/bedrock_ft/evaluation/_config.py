"""Settings of :class:`~bedrock_ft.evaluation.Evaluator`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bedrock_ft.aws import AwsConfig
from bedrock_ft.config import BaseConfig, StageFile

__all__ = ["BERTSCORE_MODELS", "EVAL_LAYOUT", "EvalConfig"]

BERTSCORE_MODELS = ("microsoft/deberta-xlarge-mnli", "roberta-large-mnli")
"""The BERTScore models fmeval's QAAccuracy accepts."""


class EvalConfig(BaseConfig):
    """How to evaluate: which engine, where the fields of a record are, how to ask the model, where to
    write the report. Metrics are fmeval's QA accuracy (exact match, quasi-exact match, F1, precision and
    recall over words, optionally BERTScore)."""

    engine: Literal["fast", "fmeval"] = Field(
        default="fast",
        description="'fast': concurrent calls and fmeval's per-record transforms, no Ray. 'fmeval': "
        "fmeval's own QAAccuracy().evaluate with a ModelRunner around the model (Ray, slower).",
    )
    question_location: str = Field(
        default="question", description="Where a record's question is: a key or a JMESPath like 'q.text'."
    )
    target_location: str = Field(
        default="answer",
        description="Where the expected answer is: a key or a JMESPath like 'answer.value'. A list of "
        "strings is read as alternatives (joined with target_delimiter).",
    )
    category_location: str | None = Field(
        default="category", description="Where the category is (optional in records); None: no categories."
    )
    system_location: str | None = Field(
        default="system",
        description="Where a record's system message is (optional in records; fast engine only).",
    )
    target_delimiter: str = Field(
        default="<OR>", min_length=1, description="Separates alternative targets, as in fmeval."
    )
    prompt_template: str | None = Field(
        default=None,
        description="An fmeval prompt template with $model_input. None: the model's own training chat "
        "template (carried in its artifacts); a plain callable target gets the question as it is.",
    )
    dataset_name: str | None = Field(
        default=None, description="Name of the dataset in the report (default: the file's stem)."
    )
    max_records: int | None = Field(
        default=None, ge=1, description="Evaluate only the first N records (None: all)."
    )
    max_tokens: int = Field(default=64, ge=1, description="Most tokens each answer may have.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 is greedy.")
    stop: tuple[str, ...] = Field(default=(), description="Stop sequences sent with each request.")
    max_concurrency: int = Field(
        default=8, ge=1, le=256, description="Requests in flight at once (fast engine)."
    )
    bertscore: bool = Field(
        default=False,
        description="Also compute BERTScore. Opt-in: it needs the BERTScore metric and its model, "
        "which are downloaded from the Hugging Face hub or must already be cached.",
    )
    bertscore_model: str = Field(default=BERTSCORE_MODELS[0], description="Model used for BERTScore.")
    output_dir: str | None = Field(
        default=None,
        description="Write report.json, records.jsonl, report.md and report.html here (None: no files).",
    )
    resume: bool = Field(
        default=True,
        description="Keep an imported model's answers in output_dir/answers.jsonl as they arrive, and "
        "reuse them in a later run with the same model, prompt and settings (nothing paid for twice).",
    )
    bootstrap_samples: int = Field(
        default=2000, ge=100, description="Resamples for the confidence interval of a difference."
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="Confidence level of intervals.")
    seed: int = Field(default=0, description="Seed of the bootstrap (the intervals are reproducible).")
    worst_examples: int = Field(
        default=5, ge=0, description="Worst-scoring records shown per model in report.md/html."
    )
    progress_bar: bool | None = Field(
        default=None,
        description="Deprecated: use Evaluator(progress_bar=...). A bar while the model answers.",
    )
    aws: AwsConfig | None = Field(
        default=None, description="Where to read an s3:// dataset from (default: the default session)."
    )

    hash_exclude = frozenset({"progress_bar", "aws", "output_dir", "resume"})

    @field_validator("bertscore_model")
    @classmethod
    def _known_bertscore(cls, value: str) -> str:
        if value not in BERTSCORE_MODELS:
            raise ValueError(f"must be one of {list(BERTSCORE_MODELS)} (what fmeval accepts)")
        return value

    @field_validator("prompt_template")
    @classmethod
    def _has_placeholder(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from string import Template

        names: list[str] = []
        for match in Template.pattern.finditer(value):
            if match.group("invalid") is not None:
                raise ValueError(
                    f"a lone '$' at character {match.start('invalid')}: write '$$' for a dollar sign"
                )
            name = match.group("named") or match.group("braced")
            if name is not None:
                names.append(name)
        if names != ["model_input"]:
            raise ValueError(
                f"must hold $model_input (where the question goes) exactly once and no other placeholder, "
                f"found {names or 'none'}; write '$$' for a dollar sign"
            )
        return value

    @field_validator("question_location", "target_location", "category_location", "system_location")
    @classmethod
    def _valid_location(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from bedrock_ft.evaluation._data import compile_location

        compile_location(value)  # raises ValueError naming the problem
        return value


EVAL_LAYOUT = StageFile(sections={"evaluate": EvalConfig})
"""A ``bedrock-ft evaluate`` config file: the ``evaluate`` section, or the EvalConfig fields alone."""
