"""Evaluate imported models with fmeval's QA accuracy (Evaluator): the same code for AWS and offline.

    python examples/05_evaluate.py                       # offline: the embedded model, local Bedrock
    python examples/05_evaluate.py --engine fmeval       # fmeval's own evaluate() (Ray; slower)
    python examples/05_evaluate.py --region us-east-1 --dataset eval.jsonl \\
        --model-arn arn:aws:bedrock:us-east-1:111122223333:imported-model/abcd1234efgh \\
        --baseline-arn arn:aws:bedrock:us-east-1:111122223333:imported-model/ijkl5678mnop   # real AWS

Offline, it imports the embedded model (SmolLM2-135M-Instruct) into a local Bedrock and scores it on a
small seeded QA set, as it is and told to answer in one word: two targets, compared
record by record, with a 95% interval for each metric's difference. With --region it scores your models
with your usual AWS credentials (it costs money: Custom Model Units while they are active).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bedrock_ft import AwsConfig, EvalConfig, Evaluator, ImportedModelClient, InvokeConfig

TERSE = "Answer with one word or one number only, without a sentence."


@contextlib.contextmanager
def _models(args: argparse.Namespace, data_dir: Path) -> Iterator[tuple[dict[str, Any], str]]:
    """Targets by label, and the dataset: yours on AWS with --region; else the embedded model."""
    if args.region:
        config = InvokeConfig(aws=AwsConfig(region=args.region, profile=args.profile))
        targets: dict[str, Any] = {}
        if args.baseline_arn:
            targets["baseline"] = ImportedModelClient.from_arn(args.baseline_arn, config)
        targets["model"] = ImportedModelClient.from_arn(args.model_arn, config)
        yield targets, args.dataset
        return
    from bedrock_ft.data import synthetic_qa
    from bedrock_ft.importing import BedrockImporter, ImportConfig, create_import_role
    from bedrock_ft.local import LocalStack
    from bedrock_ft.models import embedded_model

    dataset = data_dir / "qa.jsonl"  # fmeval-ready rows: question, answer, category
    dataset.write_text("".join(json.dumps(r) + "\n" for r in synthetic_qa(30, seed=1)))
    with LocalStack() as stack:
        aws = stack.aws_config()
        aws.client("s3").create_bucket(Bucket="example-models")
        role = create_import_role("BedrockModelImport", "s3://example-models/smollm2/", aws=aws)
        settings = ImportConfig(
            model_name="smollm2-eval",
            s3_uri="s3://example-models/smollm2/",
            role_arn=role,
            aws=aws,
            poll_interval=1.0,  # a local import job takes seconds
        )
        client = ImportedModelClient(
            BedrockImporter(settings).import_model(embedded_model()), InvokeConfig(aws=aws)
        )
        client.warm_up()  # the first call after an import is a cold start

        def terse(question: str) -> str:
            """Any callable from prompt to text can be evaluated (it gets the question as it is): here the
            same model, told to answer in one word."""
            messages = [{"role": "system", "content": TERSE}, {"role": "user", "content": question}]
            return client.chat(messages, max_tokens=24, temperature=0).text

        yield {"as-is": client, "told to be terse": terse}, str(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--region", help="Evaluate in this AWS region (default: the local Bedrock).")
    parser.add_argument("--profile", help="AWS profile.")
    parser.add_argument("--model-arn", help="Your imported model's ARN (with --region).")
    parser.add_argument("--baseline-arn", help="A model to compare with (with --region).")
    parser.add_argument("--dataset", help="JSON Lines with question and answer fields (with --region).")
    parser.add_argument("--engine", choices=("fast", "fmeval"), default="fast")
    parser.add_argument("--output", help="Report directory (default: a new temporary one).")
    args = parser.parse_args()
    if args.region and not (args.model_arn and args.dataset):
        parser.error("--region needs --model-arn and --dataset")

    output = args.output or tempfile.mkdtemp(prefix="bedrock-ft-eval-")
    # Greedy and short answers; the prompt is each model's own training chat template (never a guess).
    config = EvalConfig(engine=args.engine, max_tokens=24, output_dir=output, progress_bar=False)
    with tempfile.TemporaryDirectory() as tmp, _models(args, Path(tmp)) as (targets, dataset):
        comparison = Evaluator(config, progress=print).evaluate_many(targets, dataset)

    for line in comparison.summary():
        print(line)
    first = next(iter(comparison.reports.values()))
    print(f"records: {first.record_count + first.error_count}, engine: {first.engine}")
    print(f"prompt template: {first.prompt_template!r}")
    for key, metrics in first.metrics.items():
        if "/" in key:  # per category
            print(f"  {key}: exact match {metrics['exact_match_score']:.2f}, F1 {metrics['f1_score']:.2f}")
    worst = min(first.records(), key=lambda r: (r["scores"] or {}).get("f1_score", -1.0))
    print(f"a worst answer: {worst['question']!r} -> {worst['output']!r} (expected {worst['target']!r})")
    print(f"report: {comparison.files['html']}")
    print(f"files: {', '.join(sorted(Path(p).name for p in comparison.files.values()))}")


if __name__ == "__main__":
    main()
