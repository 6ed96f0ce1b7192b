"""The quickstart: the quickstart pipeline (``pipeline/quickstart.yaml``) on the embedded default.

It is ``bedrock-ft run examples/pipelines/quickstart.yaml`` into ``<cache>/quickstart``, fully offline:

1. the embedded model (SmolLM2-135M-Instruct) from the cache, fetched and converted on first use;
2. ``dataset``: a small synthetic QA dataset, built with ``DatasetBuilder``, and its statistics;
3. ``train``: one epoch of QLoRA fine-tuning of the embedded model on it, on CPU (``QLoRATrainer``);
4. ``merge``: the adapter merged into the bf16 base and exported as Bedrock expects it (``AdapterMerger``);
5. ``import``: the run's local stack (local S3 + local Bedrock, its state kept in the run directory);
   ``BedrockImporter`` checks the merged model against preflight, uploads it and runs the import job;
6. ``invoke``: ``ImportedModelClient`` asks the imported model in chat form (OpenAIChatCompletion:
   Bedrock applies the chat template) and in complete form (BedrockCompletion, with the prompt rendered
   here from the training chat template), retrying its cold start;
7. ``evaluate``: ``Evaluator`` scores the base model (imported too) and the fine-tuned one with fmeval's
   QA accuracy on the held-out test split, with the difference and its 95% confidence interval.

A second quickstart skips every stage whose settings and input are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["QUICKSTART_CONFIG", "quickstart_pipeline", "run_quickstart"]

QUICKSTART_CONFIG = Path(__file__).parent / "pipeline" / "quickstart.yaml"

Step = Callable[[str], None]


def quickstart_pipeline(
    question: str, *, cache: Path | None = None, evaluate: bool = True, step: Step | None = None
) -> Any:
    """The quickstart's :class:`~bedrock_ft.pipeline.Pipeline`, running into ``<cache>/quickstart``."""
    from bedrock_ft.config import load_config_file
    from bedrock_ft.models import cache_dir
    from bedrock_ft.pipeline import Pipeline, PipelineConfig

    data = load_config_file(QUICKSTART_CONFIG)
    data["run_dir"] = str((Path(cache) if cache else cache_dir()) / "quickstart")
    data["invoke"] = {**data.get("invoke", {}), "prompts": [question]}
    if not evaluate:
        data.pop("evaluate", None)
    return Pipeline(PipelineConfig.from_dict(data, source=str(QUICKSTART_CONFIG)), progress=step)


def run_quickstart(
    question: str, *, cache: Path | None = None, step: Step | None = None, evaluate: bool = True
) -> dict[str, Any]:
    """Run the quickstart and return what it found (what ``bedrock-ft quickstart --json`` prints).
    ``evaluate=False`` stops after the question (no base-vs-fine-tuned evaluation)."""
    import os

    from bedrock_ft.data import summarize
    from bedrock_ft.models import embedded_model

    say = step or (lambda message: None)
    if cache is not None:  # every stage that resolves "embedded" reads the cache from here
        os.environ["BEDROCK_FT_CACHE"] = str(cache)
    say("embedded model: looking in the cache")
    model_dir = embedded_model(cache=cache, progress=say)
    run = quickstart_pipeline(question, cache=cache, evaluate=evaluate, step=say).run()
    dataset, adapter, merged, imported = (run[s] for s in ("dataset", "train", "merge", "import"))
    invoke = run["invoke"]
    chat = invoke["answers"][0]
    result: dict[str, Any] = {
        "model_dir": str(model_dir),
        "question": question,
        "run_dir": str(run.run_dir),
        "dataset": dataset.model_dump(mode="json"),
        "dataset_summary": summarize(dataset),
        "adapter": adapter.model_dump(mode="json"),
        "merged": merged.model_dump(mode="json"),
        "imported": imported.model_dump(mode="json"),
        "s3_uri": imported.s3_uri,
        "job_arn": imported.job_arn,
        "model_arn": imported.model_arn,
        "answer": chat["answer"],
        "finish_reason": chat["finish_reason"],
        "api_format": chat["api_format"],
        "usage": chat["usage"],
        "first_answer_seconds": chat["latency_s"],
        "cold_start_retries": invoke["cold_start_retries"],
        "complete": chat.get("complete"),
        "client_usage": invoke["client_usage"],
        "stages": [list(row) for row in run.table()],
    }
    if evaluate:
        result["evaluation"] = run["evaluate"]
    return result
