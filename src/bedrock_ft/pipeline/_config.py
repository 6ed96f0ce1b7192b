"""PipelineConfig: one file, one section per stage, validated whole before anything runs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from bedrock_ft.aws import AwsConfig
from bedrock_ft.config import BaseConfig, load_config_file
from bedrock_ft.data import DatasetConfig
from bedrock_ft.errors import ConfigError, ConfigProblem
from bedrock_ft.evaluation import EvalConfig
from bedrock_ft.importing import ImportConfig
from bedrock_ft.merging import MergeConfig
from bedrock_ft.runtime import InvokeConfig
from bedrock_ft.training import QLoRAConfig, TrainingConfig

__all__ = [
    "LOCAL_BUCKET",
    "LOCAL_IMPORT_ROLE",
    "LOCAL_TRAINING_ROLE",
    "STAGES",
    "PipelineConfig",
    "PipelineEvalConfig",
    "PipelineInputs",
    "SmokeTestConfig",
    "SyntheticSource",
]

STAGES = ("dataset", "train", "merge", "import", "invoke", "evaluate")
"""The built-in stages, in the order they run."""

# What `target: local` fills in where the file leaves it out: the local stack checks no IAM.
LOCAL_BUCKET = "bedrock-ft-pipeline"
LOCAL_IMPORT_ROLE = "arn:aws:iam::123456789012:role/BedrockModelImport"
LOCAL_TRAINING_ROLE = "arn:aws:iam::123456789012:role/SageMakerTraining"

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class SyntheticSource(BaseConfig):
    """Seeded synthetic records instead of a `dataset.source`: for rehearsals and tests."""

    kind: Literal["qa", "openorca"] = Field(
        default="qa", description="qa: short questions with one right answer; openorca: OpenOrca-shaped rows."
    )
    records: int = Field(default=300, ge=10, le=1_000_000, description="How many records to generate.")
    seed: int = Field(default=0, description="Seed of the generator (the split has dataset.seed).")


class PipelineInputs(BaseConfig):
    """Where to start when earlier stages are left out: each replaces the output of its stage."""

    dataset: str | None = Field(
        default=None, description="A dataset directory or manifest.json (replaces the dataset stage)."
    )
    adapter: str | None = Field(
        default=None,
        description="A training run directory, its manifest.json, or a peft adapter directory (replaces "
        "the train stage).",
    )
    model: str | None = Field(
        default=None,
        description="A merged model: the merge's output directory, a model directory, or the s3:// prefix "
        "of a model already in S3 (replaces the merge stage).",
    )


class SmokeTestConfig(BaseConfig):
    """The invoke stage: ask the imported model a few prompts, and fail the run if it can't answer."""

    prompts: tuple[str, ...] = Field(
        default=("What is the capital of France?",), min_length=1, description="User messages to send."
    )
    max_tokens: int = Field(default=48, ge=1, description="Most tokens per answer.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 is greedy.")
    complete: bool = Field(
        default=True,
        description="Also ask each prompt in completion form, with the prompt rendered from the training "
        "chat template (when the model accepts a completion format).",
    )
    client: InvokeConfig = Field(
        default_factory=InvokeConfig, description="Client settings: cold-start wait, retries, AWS access."
    )


class PipelineEvalConfig(EvalConfig):
    """The evaluate stage: :class:`~bedrock_ft.evaluation.EvalConfig`, plus the base-model comparison."""

    compare_base: bool = Field(
        default=False,
        description="Also import the base model and score it on the same records, with the difference "
        "and its interval. On AWS this is a second import, billed like the first.",
    )
    base_model_name: str | None = Field(
        default=None,
        description="importedModelName of the base (default: the import's model_name + '-base').",
    )


class PipelineConfig(BaseConfig):
    """The whole workflow in one file (``bedrock-ft run FILE``; :class:`~bedrock_ft.pipeline.Pipeline`).

    A stage runs when its section is present: ``dataset`` (or ``synthetic``), ``training``, ``merge``,
    ``import``, ``invoke``, ``evaluate``. A stage left out needs its output given in ``inputs``, when a
    later stage reads it. Output locations default to directories of ``run_dir``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, populate_by_name=True)
    hash_exclude = frozenset({"run_dir"})

    name: str = Field(
        description="Name of the run: 1 to 40 lowercase letters, digits and '-'. It names the imported "
        "model (unless import.model_name is set) and the default run directory."
    )
    target: Literal["local", "aws"] = Field(
        default="local",
        description="local: start the local S3, Bedrock and SageMaker for the run (nothing leaves the "
        "machine); aws: the normal credential chain and region.",
    )
    run_dir: str = Field(
        default="",
        description="Directory of the run: every stage's artifact, run.json and the local stack's state. "
        "Default: bedrock-ft-runs/<name>.",
    )
    aws: AwsConfig | None = Field(
        default=None,
        description="target aws: region, profile and endpoints, used by every section that sets no `aws` "
        "of its own.",
    )
    inputs: PipelineInputs = Field(
        default_factory=PipelineInputs, description="Start from existing artifacts instead of early stages."
    )
    synthetic: SyntheticSource | None = Field(
        default=None, description="Build the dataset from seeded synthetic records (no dataset.source)."
    )
    dataset: DatasetConfig | None = Field(default=None, description="The dataset stage (DatasetBuilder).")
    qlora: QLoRAConfig = Field(
        default_factory=QLoRAConfig, description="LoRA and 4-bit settings of training."
    )
    training: TrainingConfig | None = Field(
        default=None, description="The train stage (QLoRATrainer): backend local, accelerate or sagemaker."
    )
    merge: MergeConfig | None = Field(default=None, description="The merge stage (AdapterMerger).")
    import_: ImportConfig | None = Field(
        default=None, alias="import", description="The import stage (BedrockImporter)."
    )
    invoke: SmokeTestConfig | None = Field(
        default=None, description="The invoke stage: a smoke test of the imported model."
    )
    evaluate: PipelineEvalConfig | None = Field(
        default=None, description="The evaluate stage (Evaluator), on the dataset's test split."
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        return fill_defaults(data) if isinstance(data, Mapping) else data

    # --- what runs ---------------------------------------------------------------------------------

    def section(self, stage: str) -> BaseConfig | None:
        """The config of a built-in stage, or None when the file leaves it out."""
        return {
            "dataset": self.dataset if self.dataset is not None else self.synthetic,
            "train": self.training,
            "merge": self.merge,
            "import": self.import_,
            "invoke": self.invoke,
            "evaluate": self.evaluate,
        }[stage]

    @property
    def merges_in_job(self) -> bool:
        """Whether the SageMaker training job also merges (then the merge stage takes the job's model)."""
        sm = self.training.sagemaker if self.training is not None else None
        return bool(
            self.training is not None and self.training.backend == "sagemaker" and sm and sm.merge_in_job
        )

    def enabled(self) -> list[str]:
        """The built-in stages this file runs, in order."""
        return [
            stage
            for stage in STAGES
            if self.section(stage) is not None or (stage == "merge" and self.merges_in_job)
        ]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> PipelineConfig:
        """Validate a mapping: every problem of every section, and how the sections fit together,
        in one :class:`~bedrock_ft.errors.ConfigError`."""
        problems: list[ConfigProblem] = []
        config: PipelineConfig | None = None
        try:
            config = super().from_dict(data)
        except ConfigError as exc:
            problems += exc.problems
        if isinstance(data, Mapping):
            problems += [p for p in cross_check(data) if p not in problems]
        if problems:
            raise ConfigError(problems, source=source)
        assert config is not None
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain data with the file's keys (``import``, not ``import_``); it loads back equal."""
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def from_file(cls, path: Any, *, section: str | None = None) -> PipelineConfig:
        data = load_config_file(path)
        if section is not None:
            data = data.get(section) or {}
        return cls.from_dict(data, source=str(path))


# --- defaults and cross-section checks, on the raw mapping ------------------------------------------


def _sub(data: dict[str, Any], key: str) -> dict[str, Any] | None:
    """``data[key]`` as a fresh dict to fill in, or None when absent or not a mapping (left to pydantic)."""
    value = data.get(key)
    if isinstance(value, Mapping):
        data[key] = dict(value)
        return data[key]  # type: ignore[no-any-return]
    return None


def fill_defaults(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What the pipeline fills in before validation: output locations in the run directory, the resume
    settings a pipeline needs, and (``target: local``) the bucket and roles of the local stack."""
    data = dict(raw)
    name = data.get("name") if isinstance(data.get("name"), str) and _NAME.match(data["name"]) else "run"
    run_dir = data.get("run_dir") or f"bedrock-ft-runs/{name}"
    data["run_dir"] = run_dir
    local = data.get("target", "local") == "local"
    aws = data.get("aws")
    if isinstance(data.get("synthetic"), Mapping) and data.get("dataset") is None:
        data["dataset"] = {}
    if (dataset := _sub(data, "dataset")) is not None:
        dataset.setdefault("output", f"{run_dir}/dataset")
        dataset.setdefault("overwrite", True)  # the run owns its directory; a stage is redone only on purpose
        if isinstance(data.get("synthetic"), Mapping):
            dataset.setdefault("format", "qa")
    if (training := _sub(data, "training")) is not None:
        training.setdefault("output_dir", f"{run_dir}/adapter")
        training.setdefault("resume", True)  # a killed run continues from its last checkpoint
        if training.get("backend") == "sagemaker" and (sm := _sub(training, "sagemaker")) is not None:
            if local:
                sm.setdefault("role_arn", LOCAL_TRAINING_ROLE)
                sm.setdefault("output_s3_uri", f"s3://{LOCAL_BUCKET}/{name}/training/")
            elif aws is not None:
                sm.setdefault("aws", aws)
    if (merge := _sub(data, "merge")) is not None:
        merge.setdefault("output_dir", f"{run_dir}/merged")
        merge.setdefault("overwrite", True)
        merge.setdefault("reuse", True)
    if (imp := _sub(data, "import")) is not None:
        imp.setdefault("model_name", name)
        if local:
            imp.setdefault("role_arn", LOCAL_IMPORT_ROLE)
            imp.setdefault("s3_uri", f"s3://{LOCAL_BUCKET}/{name}/model/")
    if (evaluate := _sub(data, "evaluate")) is not None:
        evaluate.setdefault("output_dir", f"{run_dir}/evaluation")
    if not local and aws is not None:
        for key in ("dataset", "import", "evaluate"):
            if (section := _sub(data, key)) is not None:
                section.setdefault("aws", aws)
        if (invoke := _sub(data, "invoke")) is not None and (client := _sub(invoke, "client")) is not None:
            client.setdefault("aws", aws)
        elif invoke is not None and "client" not in invoke:
            invoke["client"] = {"aws": aws}
    return data


def _has(data: Mapping[str, Any], key: str) -> bool:
    return data.get(key) is not None


def cross_check(data: Mapping[str, Any]) -> list[ConfigProblem]:
    """How the sections fit together: each stage that runs has its input, from a stage or ``inputs``."""
    problems: list[ConfigProblem] = []
    inputs = data.get("inputs") if isinstance(data.get("inputs"), Mapping) else {}
    assert isinstance(inputs, Mapping)
    name = data.get("name")
    if isinstance(name, str) and not _NAME.match(name):
        problems.append(
            ConfigProblem(
                "name", "use 1 to 40 lowercase letters, digits and '-', starting with a letter or digit"
            )
        )
    dataset = data.get("dataset") if isinstance(data.get("dataset"), Mapping) else {}
    assert isinstance(dataset, Mapping)
    if _has(data, "synthetic") and dataset.get("source"):
        problems.append(ConfigProblem("synthetic", "give either synthetic or dataset.source, not both"))
    has_dataset = _has(data, "dataset") or _has(data, "synthetic") or _has(inputs, "dataset")
    has_adapter = _has(data, "training") or _has(inputs, "adapter")
    has_model = _has(data, "merge") or _has(inputs, "model") or _merges_in_job(data)
    has_import = _has(data, "import")
    needs = [
        ("training", has_dataset, "a dataset: add a dataset (or synthetic) section or inputs.dataset"),
        ("merge", has_adapter, "an adapter: add a training section or inputs.adapter"),
        ("import", has_model, "a merged model: add a merge section or inputs.model"),
        ("invoke", has_import, "an imported model: add an import section"),
        ("evaluate", has_import, "an imported model: add an import section"),
        ("evaluate", has_dataset, "a dataset with a test split: add a dataset section or inputs.dataset"),
    ]
    for section, ok, message in needs:
        if _has(data, section) and not ok:
            problems.append(ConfigProblem(section, f"this stage needs {message}"))
    evaluate = data.get("evaluate") if isinstance(data.get("evaluate"), Mapping) else {}
    assert isinstance(evaluate, Mapping)
    if evaluate.get("compare_base") and not has_adapter:
        problems.append(
            ConfigProblem(
                "evaluate.compare_base", "needs the adapter (training or inputs.adapter) to know the base"
            )
        )
    if _merges_in_job(data) and _has(data, "merge"):
        problems.append(
            ConfigProblem(
                "merge", "the training job merges (training.sagemaker.merge_in_job): leave this section out"
            )
        )
    makers = {"dataset": "dataset", "adapter": "training", "model": "merge"}
    for key, value in inputs.items():
        made = _has(data, makers.get(str(key), str(key))) or (key == "dataset" and _has(data, "synthetic"))
        if isinstance(value, str) and made:
            problems.append(
                ConfigProblem(
                    f"inputs.{key}", "given, but the stage that makes it also runs: remove one of them"
                )
            )
    if data.get("target") == "aws" and _has(data, "import"):
        imp = data["import"] if isinstance(data["import"], Mapping) else {}
        in_s3 = _merges_in_job(data) or str(inputs.get("model") or "").startswith("s3://")
        if not imp.get("s3_uri") and not in_s3:
            problems.append(
                ConfigProblem(
                    "import.s3_uri", "missing: where the merged model is uploaded (s3://bucket/prefix/)"
                )
            )
    return problems


def _merges_in_job(data: Mapping[str, Any]) -> bool:
    training = data.get("training")
    if not isinstance(training, Mapping) or training.get("backend") != "sagemaker":
        return False
    sm = training.get("sagemaker")
    return isinstance(sm, Mapping) and bool(sm.get("merge_in_job"))
