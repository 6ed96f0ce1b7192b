"""The built-in stages: each a plain function of a :class:`StageContext`, returning its output.

A stage returns an :class:`~bedrock_ft.artifacts.Artifact` (the pipeline writes its manifest into the
stage's directory) or a JSON-able mapping (written as ``result.json``). A user's own function with the
same signature replaces a built-in one: ``Pipeline(config, stages={"dataset": my_dataset})``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import ConflictError, PipelineError

if TYPE_CHECKING:
    from bedrock_ft.aws import AwsConfig
    from bedrock_ft.pipeline._config import PipelineConfig
    from bedrock_ft.pipeline._state import StageRecord

__all__ = ["BUILTIN", "STAGE_DIRS", "StageContext", "StageFunction", "summarize"]

# Each stage's directory in the run directory (named after what it holds).
STAGE_DIRS = {
    "dataset": "dataset",
    "train": "adapter",
    "merge": "merged",
    "import": "imported",
    "invoke": "invoke",
    "evaluate": "evaluation",
}


@dataclass
class StageContext:
    """What a stage function gets: the config, its directory, the outputs of the stages before it, and
    AWS access (the run's local stack, started on first use, or AWS itself)."""

    name: str
    config: PipelineConfig
    run_dir: Path
    say: Callable[[str], None]
    previous: StageRecord | None
    outputs: Mapping[str, Any]
    _services: Callable[[], AwsConfig] = field(repr=False)

    @property
    def stage_dir(self) -> Path:
        return self.run_dir / STAGE_DIRS.get(self.name, self.name)

    def input(self, stage: str) -> Any:
        """The output of an earlier stage: its artifact, its result mapping, or the path ``inputs`` gives."""
        if stage not in self.outputs:
            raise PipelineError(
                f"stage {self.name}: stage {stage!r} has no output (run it first)", stage=self.name
            )
        return self.outputs[stage]

    def aws(self) -> AwsConfig:
        """AWS access for this stage. ``target: local`` starts the run's local stack on first use (the
        standard AWS_ENDPOINT_URL_* variables point every client at it)."""
        return self._services()


StageFunction = Callable[[StageContext], Any]


# --- the six built-in stages ----------------------------------------------------------------------------


def dataset_stage(ctx: StageContext) -> Any:
    from bedrock_ft.data import DatasetBuilder, synthetic_openorca, synthetic_qa

    cfg = ctx.config.dataset
    assert cfg is not None
    if cfg.output.startswith("s3://") or (cfg.source or "").startswith("s3://"):
        ctx.aws()
    records = None
    if (synthetic := ctx.config.synthetic) is not None:
        make = synthetic_qa if synthetic.kind == "qa" else synthetic_openorca
        records = list(make(synthetic.records, synthetic.seed))
        ctx.say(f"generating {synthetic.records} synthetic {synthetic.kind} records (seed {synthetic.seed})")
    return DatasetBuilder(cfg, source=records, progress=ctx.say).build()


def train_stage(ctx: StageContext) -> Any:
    from bedrock_ft.training import QLoRATrainer, RunMismatchError

    training = ctx.config.training
    assert training is not None
    if training.backend == "sagemaker":
        ctx.aws()
    dataset = ctx.input("dataset")
    trainer = QLoRATrainer(ctx.config.qlora, training, progress=ctx.say, progress_bar=False)
    try:
        return trainer.train(dataset)
    except RunMismatchError as exc:  # the run directory holds a run of other settings or data
        ctx.say(f"the run directory holds another run ({exc}): training again from the start")
        again = training.replace(resume=False, overwrite=True)
        return QLoRATrainer(ctx.config.qlora, again, progress=ctx.say, progress_bar=False).train(dataset)


def merge_stage(ctx: StageContext) -> Any:
    from bedrock_ft.artifacts import AdapterArtifact

    adapter = ctx.input("train")
    if ctx.config.merges_in_job:
        assert isinstance(adapter, AdapterArtifact)
        merged = adapter.merged_model_artifact()
        if merged is None:
            raise PipelineError("the training job wrote no merged model (merge_in_job)", stage=ctx.name)
        ctx.say(f"the training job merged the adapter: {merged.model_dir}")
        return merged
    from bedrock_ft.merging import AdapterMerger

    cfg = ctx.config.merge
    assert cfg is not None
    return AdapterMerger(cfg, progress=ctx.say).merge(adapter)


def import_stage(ctx: StageContext) -> Any:
    from bedrock_ft.importing import BedrockImporter, ImportedModels

    cfg = ctx.config.import_
    assert cfg is not None
    aws = ctx.aws()
    cfg = cfg.replace(aws=_merge_aws(cfg.aws, aws))
    before: dict[str, Any] = ctx.previous.summary if ctx.previous else {}
    if cfg.s3_uri and before.get("s3_uri") == cfg.s3_uri and not cfg.overwrite:
        # This run uploaded there before: a changed model replaces its own earlier upload.
        cfg = cfg.replace(overwrite=True)
    model = ctx.input("merge")
    try:
        return BedrockImporter(cfg, progress=ctx.say).import_model(model)
    except ConflictError:
        models = ImportedModels(cfg.aws, progress=ctx.say)
        holder = models.find(cfg.model_name)
        earlier = before.get("model_arn")
        if holder is None or not earlier or holder.model_arn != earlier:
            raise
        if ctx.config.target != "local":
            raise ConflictError(
                f"model name {cfg.model_name!r} is taken by this run's earlier import ({earlier}), and the "
                f"model changed since: delete it first (bedrock-ft models delete {cfg.model_name}) or set "
                "import.model_name"
            ) from None
        # The local rehearsal owns its models: replace the run's earlier import of this name.
        ctx.say(f"replacing this run's earlier local import {earlier}")
        models.delete(str(earlier))
        return BedrockImporter(cfg, progress=ctx.say).import_model(model)


def invoke_stage(ctx: StageContext) -> dict[str, Any]:
    from bedrock_ft.runtime import ImportedModelClient

    smoke = ctx.config.invoke
    assert smoke is not None
    aws = ctx.aws()
    imported = ctx.input("import")
    retries: list[str] = []
    client = ImportedModelClient(
        imported,
        smoke.client.replace(aws=_merge_aws(smoke.client.aws, aws)),
        on_retry=lambda event: retries.append(event.kind),
    )
    ctx.say("invoking the imported model (the first call is a cold start)")
    answers = []
    for prompt in smoke.prompts:
        messages = [{"role": "user", "content": prompt}]
        chat = client.chat(messages, max_tokens=smoke.max_tokens, temperature=smoke.temperature)
        answer: dict[str, Any] = {
            "prompt": prompt,
            "answer": chat.text.strip(),
            "finish_reason": chat.finish_reason,
            "api_format": chat.api_format,
            "usage": {"input_tokens": chat.input_tokens, "output_tokens": chat.output_tokens},
            "latency_s": round(chat.latency_s, 2),
        }
        if smoke.complete and "BedrockCompletion" in client.formats:
            rendered = client.render_chat(messages)
            done = client.complete(rendered, max_tokens=smoke.max_tokens, temperature=smoke.temperature)
            answer["complete"] = {
                "prompt": rendered,
                "text": done.text.strip(),
                "finish_reason": done.finish_reason,
                "api_format": done.api_format,
                "latency_s": round(done.latency_s, 3),
            }
        if not answer["answer"]:
            ctx.say(f"warning: the model gave an empty answer to {prompt!r}")
        answers.append(answer)
    return {
        "model_arn": client.model_id,
        "answers": answers,
        "cold_start_retries": retries.count("cold_start"),
        "client_usage": client.usage.as_dict(),
    }


def evaluate_stage(ctx: StageContext) -> dict[str, Any]:
    from bedrock_ft.evaluation import Evaluator
    from bedrock_ft.runtime import ImportedModelClient, InvokeConfig

    cfg = ctx.config.evaluate
    assert cfg is not None
    aws = ctx.aws()
    client_cfg = InvokeConfig(aws=_merge_aws(cfg.aws, aws) if cfg.aws is not None else aws)
    tuned = ImportedModelClient(ctx.input("import"), client_cfg)
    targets: dict[str, Any] = {}
    if cfg.compare_base:
        targets["base"] = ImportedModelClient(_import_base(ctx, cfg.base_model_name), client_cfg)
    targets["fine-tuned"] = tuned
    for client in targets.values():
        client.warm_up()
    settings = cfg.model_dump(exclude={"compare_base", "base_model_name"})
    from bedrock_ft.evaluation import EvalConfig

    comparison = Evaluator(EvalConfig.model_validate(settings), progress=ctx.say).evaluate_many(
        targets, ctx.input("dataset")
    )
    out: dict[str, Any] = comparison.model_dump(mode="json")
    out["summary"] = comparison.summary()
    return out


def _import_base(ctx: StageContext, name: str | None) -> Any:
    """Import the base model the adapter was trained from, beside the fine-tuned one."""
    from bedrock_ft._base_model import fetch_from_hub, local_model_dir
    from bedrock_ft.artifacts import AdapterArtifact
    from bedrock_ft.importing import BedrockImporter

    adapter = ctx.input("train")
    if not isinstance(adapter, AdapterArtifact):
        adapter = AdapterArtifact.read(adapter)
    cfg = ctx.config.import_
    assert cfg is not None
    base_dir = local_model_dir(adapter.base_model, error=PipelineError) or fetch_from_hub(adapter.base_model)
    s3_uri = (cfg.s3_uri or "").rstrip("/") + "-base/" if cfg.s3_uri else None
    base_cfg = cfg.replace(model_name=name or f"{cfg.model_name}-base", s3_uri=s3_uri, job_name=None)
    ctx.say(f"importing the base model too, to compare with ({adapter.base_model})")
    return BedrockImporter(base_cfg, progress=ctx.say).import_model(base_dir)


def import_still_there(ctx: StageContext, imported: Any) -> str | None:
    """Why an earlier import can't be used any more (its model was deleted), or None."""
    from bedrock_ft.errors import ResourceNotFoundError
    from bedrock_ft.importing import ImportedModels

    arn = getattr(imported, "model_arn", None)
    if not arn:
        return "its import job had not finished"
    try:
        ImportedModels(ctx.aws()).get(arn)
    except ResourceNotFoundError:
        return f"its model {arn} no longer exists in Bedrock"
    return None


def _merge_aws(own: AwsConfig | None, run: AwsConfig) -> AwsConfig:
    """A section's own AWS settings where it has any, else the run's."""
    from bedrock_ft.aws import AwsConfig

    if own is None or own == AwsConfig():
        return run
    return own


BUILTIN: dict[str, StageFunction] = {
    "dataset": dataset_stage,
    "train": train_stage,
    "merge": merge_stage,
    "import": import_stage,
    "invoke": invoke_stage,
    "evaluate": evaluate_stage,
}

# Checks of a skipped stage's output against the world, made when a later stage is about to read it.
STILL_VALID: dict[str, Callable[[StageContext, Any], str | None]] = {"import": import_still_there}

# What each built-in stage reads, besides its own settings.
NEEDS: dict[str, tuple[str, ...]] = {
    "dataset": (),
    "train": ("dataset",),
    "merge": ("train",),
    "import": ("merge",),
    "invoke": ("import",),
    "evaluate": ("import", "dataset"),
}


# --- key outputs, for run.json and the table at the end of a run ---------------------------------------


def summarize(stage: str, value: Any) -> dict[str, Any]:
    """The few figures of a stage's output worth a column in the run's table."""
    data = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    if not isinstance(data, Mapping):
        return {}
    kind = data.get("kind")
    if kind == "dataset":
        return {"records": dict(data.get("record_counts") or {})}
    if kind == "adapter":
        m = data.get("train_metrics") or {}
        return {
            k: m.get(k) for k in ("global_step", "first_loss", "final_loss", "tokens_per_second") if m.get(k)
        }
    if kind == "model":
        return {
            "model_dir": data.get("model_dir"),
            "dtype": data.get("dtype"),
            "bytes": data.get("total_bytes"),
        }
    if kind == "imported_model":
        return {
            "model_arn": data.get("model_arn"),
            "status": data.get("status"),
            "s3_uri": data.get("s3_uri"),
        }
    if stage == "invoke" or "answers" in data:
        first = (data.get("answers") or [{}])[0]
        return {"answer": first.get("answer"), "cold_start_retries": data.get("cold_start_retries")}
    if "reports" in data:
        return {"summary": data.get("summary"), "report": (data.get("files") or {}).get("html")}
    return {}


def default_section_hash(config: PipelineConfig, stage: str) -> str:
    """The hash of the settings that decide a built-in stage's output."""
    from bedrock_ft.pipeline._state import hash_text

    parts: list[str] = []
    if stage == "dataset":
        parts = [c.config_hash() for c in (config.dataset, config.synthetic) if c is not None]
    elif stage == "train":
        assert config.training is not None
        parts = [config.qlora.config_hash(), config.training.config_hash()]
    elif stage == "merge":
        parts = [config.merge.config_hash() if config.merge is not None else "merge-in-job"]
    else:
        section = config.section(stage)
        parts = [section.config_hash() if section is not None else ""]
    if stage in ("import", "invoke", "evaluate"):
        parts.append(config.target)  # the same settings on another target make another model
        if config.aws is not None:
            parts.append(config.aws.config_hash())
    return hash_text(stage, *parts)


def path_of(value: Any) -> str | None:
    """Where an input given as a path (``inputs``) lives, for its fingerprint."""
    return str(value) if isinstance(value, str | Path) else None
