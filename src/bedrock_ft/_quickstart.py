"""The quickstart: the embedded model through a Custom Model Import rehearsal, fully offline.

It runs every stage that exists so far, on the embedded default:

1. the embedded model (SmolLM2-135M-Instruct) from the cache, fetched and converted on first use;
2. a small synthetic QA dataset, built with ``DatasetBuilder``, and its statistics;
3. one epoch of QLoRA fine-tuning of the embedded model on it, on CPU (``QLoRATrainer``). The run
   directory is kept in the cache: a second quickstart finds the finished run and reuses it;
4. the adapter merged into the bf16 base and exported as Bedrock expects it (``AdapterMerger``),
   also kept in the cache and reused while the adapter is unchanged;
5. a ``LocalStack`` (local S3 + local Bedrock): ``BedrockImporter`` checks the merged model against
   preflight, uploads it, runs the import job and waits for it;
6. ``ImportedModelClient`` invokes the imported model in chat form (OpenAIChatCompletion: Bedrock
   applies the chat template) and in complete form (BedrockCompletion, with the prompt rendered here
   from the training chat template the artifact carries), retrying its cold start;
7. ``Evaluator`` scores the base model (imported too) and the fine-tuned one with fmeval's QA accuracy on
   the held-out test split, and reports the difference with its 95% confidence interval.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["run_quickstart"]

BUCKET = "bedrock-ft-quickstart"
ROLE_ARN = "arn:aws:iam::123456789012:role/BedrockModelImport"
MODEL_NAME = "smollm2-quickstart-ft"
BASE_NAME = "smollm2-quickstart-base"

Step = Callable[[str], None]


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
    from bedrock_ft.training import RunMismatchError

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


def run_quickstart(
    question: str, *, cache: Path | None = None, step: Step | None = None, evaluate: bool = True
) -> dict[str, Any]:
    """Run the quickstart and return what it found (what ``bedrock-ft quickstart --json`` prints).
    ``evaluate=False`` stops after the question (no base-vs-fine-tuned evaluation)."""
    from bedrock_ft.data import build_synthetic_dataset, summarize
    from bedrock_ft.errors import translate_client_errors
    from bedrock_ft.importing import BedrockImporter, ImportConfig
    from bedrock_ft.local import LocalStack
    from bedrock_ft.models import cache_dir, embedded_model
    from bedrock_ft.runtime import ImportedModelClient, InvokeConfig

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
        settings = ImportConfig(  # a local import job takes seconds: check on it every second
            model_name=MODEL_NAME,
            s3_uri=f"s3://{BUCKET}/merged/",
            role_arn=ROLE_ARN,
            aws=config,
            poll_interval=1.0,
        )
        imported = BedrockImporter(settings, progress=say).import_model(Path(result["merged"]["model_dir"]))
        result["imported"] = imported.model_dump(mode="json")
        say("invoking the imported model (the first call is a cold start)")
        retries: list[str] = []
        client = ImportedModelClient(
            imported, InvokeConfig(aws=config), on_retry=lambda event: retries.append(event.kind)
        )
        messages = [{"role": "user", "content": question}]
        chat = client.chat(messages, max_tokens=48, temperature=0)
        prompt = client.render_chat(messages)
        completion = client.complete(prompt, max_tokens=48, temperature=0)
        result.update(
            {
                "s3_uri": imported.s3_uri,
                "job_arn": imported.job_arn,
                "model_arn": imported.model_arn,
                "answer": chat.text.strip(),
                "finish_reason": chat.finish_reason,
                "api_format": chat.api_format,
                "usage": {"input_tokens": chat.input_tokens, "output_tokens": chat.output_tokens},
                "first_answer_seconds": round(chat.latency_s, 2),
                "cold_start_retries": retries.count("cold_start"),
                "complete": {
                    "prompt": prompt,
                    "text": completion.text.strip(),
                    "finish_reason": completion.finish_reason,
                    "api_format": completion.api_format,
                    "latency_s": round(completion.latency_s, 3),
                },
                "client_usage": client.usage.as_dict(),
            }
        )
        if evaluate:
            root = (Path(cache) if cache else cache_dir()) / "quickstart"
            result["evaluation"] = _evaluate(client, model_dir, dataset, aws=config, root=root, say=say)
    return result


def _evaluate(
    tuned: Any, model_dir: Path, dataset: Any, *, aws: Any, root: Path, say: Step
) -> dict[str, Any]:
    """Import the base model too, then score both on the held-out split with fmeval's QA accuracy."""
    from bedrock_ft.evaluation import EvalConfig, Evaluator
    from bedrock_ft.importing import BedrockImporter, ImportConfig
    from bedrock_ft.runtime import ImportedModelClient, InvokeConfig

    say("importing the base model too, to compare with")
    settings = ImportConfig(
        model_name=BASE_NAME, s3_uri=f"s3://{BUCKET}/base/", role_arn=ROLE_ARN, aws=aws, poll_interval=1.0
    )
    base = ImportedModelClient(
        BedrockImporter(settings, progress=say).import_model(model_dir), InvokeConfig(aws=aws)
    )
    base.warm_up()
    # Both models are imported anew on every run (new ARNs), so there are no answers to resume from.
    config = EvalConfig(max_tokens=24, output_dir=str(root / "evaluation"), progress_bar=False, resume=False)
    comparison = Evaluator(config, progress=say).evaluate_many({"base": base, "fine-tuned": tuned}, dataset)
    out: dict[str, Any] = comparison.model_dump(mode="json")
    out["summary"] = comparison.summary()
    return out
