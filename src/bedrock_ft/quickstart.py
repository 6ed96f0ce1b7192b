"""The quickstart: the embedded model through a Custom Model Import rehearsal, fully offline.

It runs every stage that exists so far, on the embedded default:

1. the embedded model (SmolLM2-135M-Instruct) from the cache, fetched and converted on first use;
2. a small synthetic QA dataset, built with ``DatasetBuilder``, and its statistics;
3. one epoch of QLoRA fine-tuning of the embedded model on it, on CPU (``QLoRATrainer``). The run
   directory is kept in the cache: a second quickstart finds the finished run and reuses it;
4. the adapter merged into the bf16 base and exported as Bedrock expects it (``AdapterMerger``),
   also kept in the cache and reused while the adapter is unchanged;
5. a ``LocalStack`` (local S3 + local Bedrock): ``BedrockImporter`` checks the merged model against
   preflight, uploads it, runs the import job and waits for it; then the imported model is invoked
   with the OpenAIChatCompletion body, retrying its cold start as a client must.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run_quickstart"]

BUCKET = "bedrock-ft-quickstart"
ROLE_ARN = "arn:aws:iam::123456789012:role/BedrockModelImport"
MODEL_NAME = "smollm2-quickstart-ft"

Step = Callable[[str], None]


def _invoke_chat(runtime: Any, model_arn: str, body: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """InvokeModel, retrying ModelNotReadyException (the cold start) until the model has loaded."""
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            response = runtime.invoke_model(modelId=model_arn, body=json.dumps(body))
            result: dict[str, Any] = json.loads(response["body"].read())
            return result
        except runtime.exceptions.ModelNotReadyException:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _train(dataset: Any, output_dir: Path, say: Step) -> dict[str, Any]:
    """One epoch over the synthetic QA set: ~10 optimizer steps, about a minute on two CPU cores."""
    from bedrock_ft.training import QLoRAConfig, QLoRATrainer, TrainingConfig

    training = TrainingConfig(
        output_dir=str(output_dir),
        resume=True,  # a finished run with the same settings and data is returned as it is
        max_length=256,
        per_device_batch_size=4,
        gradient_checkpointing=False,  # 135M parameters: memory is ample, and recomputing costs time
        num_epochs=1,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        logging_steps=1,
        save_steps=5,
    )
    from bedrock_ft.training.rundir import RunMismatchError

    try:
        adapter = QLoRATrainer(QLoRAConfig(), training, progress=say, progress_bar=False).train(dataset)
    except RunMismatchError:  # the cache holds a run from other settings (e.g. an older bedrock-ft)
        say("the cached quickstart run used other settings: training again")
        training = training.replace(resume=False, overwrite=True)
        adapter = QLoRATrainer(QLoRAConfig(), training, progress=say, progress_bar=False).train(dataset)
    out: dict[str, Any] = adapter.model_dump(mode="json")
    return out


def _merge(adapter_dir: Path, output_dir: Path, say: Step) -> dict[str, Any]:
    """Merge the fine-tuned adapter into the embedded base; a cached merge of the same adapter is reused."""
    from bedrock_ft.merging import AdapterMerger, MergeConfig

    config = MergeConfig(output_dir=str(output_dir), reuse=True, overwrite=True)
    out: dict[str, Any] = (
        AdapterMerger(config, progress=say).merge(adapter_dir.parent).model_dump(mode="json")
    )
    return out


def run_quickstart(question: str, *, cache: Path | None = None, step: Step | None = None) -> dict[str, Any]:
    """Run the quickstart and return what it found (what ``bedrock-ft quickstart --json`` prints)."""
    from bedrock_ft.bedrock import BedrockImporter, ImportConfig
    from bedrock_ft.data import build_synthetic_dataset, summarize
    from bedrock_ft.errors import translate_client_errors
    from bedrock_ft.local import LocalStack
    from bedrock_ft.models import cache_dir, embedded_model

    say = step or (lambda message: None)
    say("embedded model: looking in the cache")
    model_dir = embedded_model(cache=cache, progress=say)
    result: dict[str, Any] = {"model_dir": str(model_dir), "question": question}

    say("building the synthetic QA dataset (seeded arithmetic and facts)")
    data_dir = (Path(cache) if cache else cache_dir()) / "quickstart" / "dataset"
    dataset = build_synthetic_dataset(data_dir, n=300, seed=0, tokenizer=str(model_dir), overwrite=True)
    result["dataset"] = dataset.model_dump(mode="json")
    result["dataset_summary"] = summarize(dataset)

    say("fine-tuning the embedded model with QLoRA (4-bit nf4, LoRA r16 on every projection)")
    result["adapter"] = _train(
        dataset, (Path(cache) if cache else cache_dir()) / "quickstart" / "adapter", say
    )

    say("merging the adapter into the bf16 base, exported for Custom Model Import")
    result["merged"] = _merge(
        Path(result["adapter"]["adapter_dir"]),
        (Path(cache) if cache else cache_dir()) / "quickstart" / "merged",
        say,
    )

    say("starting the local S3 and the local Bedrock")
    with LocalStack() as stack, translate_client_errors():
        config = stack.aws_config()
        config.client("s3").create_bucket(Bucket=BUCKET)
        settings = ImportConfig(
            model_name=MODEL_NAME, s3_uri=f"s3://{BUCKET}/merged/", role_arn=ROLE_ARN, aws=config
        )
        imported = BedrockImporter(settings, progress=say).import_model(Path(result["merged"]["model_dir"]))
        result["imported"] = imported.model_dump(mode="json")
        model_arn = str(imported.model_arn)
        runtime = config.client("bedrock-runtime")
        say("invoking the imported model (the first call is a cold start)")
        started = time.perf_counter()
        body = {"messages": [{"role": "user", "content": question}], "max_tokens": 48, "temperature": 0}
        out = _invoke_chat(runtime, model_arn, body)
        result.update(
            {
                "s3_uri": imported.s3_uri,
                "job_arn": imported.job_arn,
                "model_arn": model_arn,
                "answer": out["choices"][0]["message"]["content"].strip(),
                "finish_reason": out["choices"][0]["finish_reason"],
                "usage": out["usage"],
                "first_answer_seconds": round(time.perf_counter() - started, 2),
            }
        )
    return result
