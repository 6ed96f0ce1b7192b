"""ImportedModelClient against the local Bedrock: batch throughput by concurrency, and what throttling costs.

    OMP_NUM_THREADS=2 python benchmarks/invoke.py [--prompts 64] [--max-tokens 32]

Prints one JSON object. Everything runs in the same process and run, on the embedded model over real
HTTP with boto3:

1. ``batch_chat`` of the same prompts at concurrency 1, 2, 4 and 8: requests/s and generated tokens/s,
   each as a ratio to concurrency 1;
2. under throttling: the local Bedrock restarted on the same state with a limit of 0.5 and 0.2 times
   the unthrottled rate of a 200-prompt, one-token batch at concurrency 8; the batch's wall time
   against the ideal (200 / limit), its retries and failed items, with the client's adaptive rate
   limiter on (the default) and off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bedrock_ft.importing import BedrockImporter, ImportConfig
from bedrock_ft.local import LocalBedrockConfig, LocalStack
from bedrock_ft.models import embedded_model
from bedrock_ft.runtime import BatchResult, ImportedModelClient, InvokeConfig

ROLE = "arn:aws:iam::123456789012:role/BedrockModelImport"
CAPITALS = ["France", "Italy", "Spain", "Germany", "Japan", "Canada", "Egypt", "Peru"]


def _client(stack: LocalStack, imported: Any, **settings: Any) -> ImportedModelClient:
    client = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config(), **settings))
    client.warm_up()
    return client


def _figures(result: BatchResult) -> dict[str, Any]:
    latencies = [item.completion.latency_s for item in result if item.completion]
    return {
        "ok": result.ok,
        "seconds": round(result.seconds, 2),
        "requests_per_s": round(result.requests_per_second, 2),
        "output_tokens_per_s": round(result.usage.output_tokens / result.seconds, 1),
        "p50_latency_s": round(statistics.median(latencies), 3),
        "retries": result.usage.retries,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--throttled-prompts", type=int, default=200)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-invoke-"))
    report: dict[str, Any] = {}
    questions = [
        [{"role": "user", "content": f"What is the capital of {CAPITALS[i % len(CAPITALS)]}? ({i})"}]
        for i in range(args.prompts)
    ]
    with LocalStack(LocalBedrockConfig(idle_unload_seconds=None, data_dir=data_dir)) as stack:
        aws = stack.aws_config()
        aws.client("s3").create_bucket(Bucket="bench-models")
        config = ImportConfig(model_name="bench", s3_uri="s3://bench-models/bench/", role_arn=ROLE, aws=aws)
        imported = BedrockImporter(config).import_model(embedded_model())
        client = _client(stack, imported, generation={"temperature": 0.0, "max_tokens": args.max_tokens})
        by_concurrency: dict[str, Any] = {}
        for concurrency in (1, 2, 4, 8):
            by_concurrency[str(concurrency)] = _figures(
                client.batch_chat(questions, max_concurrency=concurrency)
            )
        base = by_concurrency["1"]["requests_per_s"]
        for figures in by_concurrency.values():
            figures["x_vs_concurrency_1"] = round(figures["requests_per_s"] / base, 2)
        report["batch_chat"] = {
            "prompts": args.prompts,
            "max_tokens": args.max_tokens,
            "by_concurrency": by_concurrency,
        }

        prompts = [f"word {i}" for i in range(args.throttled_prompts)]
        free = client.batch_complete(prompts, max_concurrency=8, max_tokens=1)
        unthrottled = free.requests_per_second
    throttled: dict[str, Any] = {"unthrottled": _figures(free)}
    for fraction in (0.5, 0.2):
        limit = round(unthrottled * fraction, 1)
        ideal = len(prompts) / limit
        runs: dict[str, Any] = {"limit_rps": limit, "ideal_seconds": round(ideal, 2)}
        for adaptive in (True, False):
            settings = LocalBedrockConfig(idle_unload_seconds=None, data_dir=data_dir, throttle_rps=limit)
            with LocalStack(settings) as stack:  # the same state: the imported model is still there
                client = _client(stack, imported, adaptive_rate_limit=adaptive)
                result = client.batch_complete(prompts, max_concurrency=8, max_tokens=1)
                figures = _figures(result)
                figures["failed"] = len(result.errors)
                figures["x_ideal_seconds"] = round(result.seconds / ideal, 2)
                figures["retries_per_request"] = round(result.usage.retries / len(prompts), 3)
                runs["adaptive rate limit" if adaptive else "no client-side limit"] = figures
        throttled[f"limit {fraction:g} x unthrottled"] = runs
    report["throttled_batch"] = {"prompts": len(prompts), "concurrency": 8, **throttled}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
