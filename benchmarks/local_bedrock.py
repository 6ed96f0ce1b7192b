"""Local Bedrock figures: server start, cold-start load, and 64-token completion throughput/latency.

    OMP_NUM_THREADS=2 python benchmarks/local_bedrock.py [--requests 24]

Prints one JSON object. Everything runs on the embedded model over real HTTP with boto3, twice in the
same run: with the default batched engine, and with max_batch=1 (one request at a time) as the baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from bedrock_ft.local import LocalBedrockConfig, LocalStack
from bedrock_ft.local.engine import TransformersEngine
from bedrock_ft.models import embedded_model


def _client(stack: LocalStack, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=stack.s3_url if service == "s3" else stack.bedrock_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=16, read_timeout=600),
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=24, help="Requests per concurrency level.")
    args = parser.parse_args()
    model_dir = embedded_model()
    report = {
        "batched (default)": run(model_dir, TransformersEngine(), args.requests),
        "one at a time (max_batch=1)": run(model_dir, TransformersEngine(max_batch=1), args.requests),
    }
    print(json.dumps(report, indent=2))


def run(model_dir: Any, engine: TransformersEngine, requests: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    started = time.perf_counter()
    config = LocalBedrockConfig(idle_unload_seconds=None)
    stack = LocalStack(config, engine=engine, export_env=False).start()
    results["server_start_s"] = round(time.perf_counter() - started, 3)
    try:
        s3, bedrock, runtime = (_client(stack, name) for name in ("s3", "bedrock", "bedrock-runtime"))
        s3.create_bucket(Bucket="bench")
        for path in model_dir.iterdir():
            if path.is_file():
                s3.upload_file(str(path), "bench", f"m/{path.name}")
        started = time.perf_counter()
        job_arn = bedrock.create_model_import_job(
            jobName="bench",
            importedModelName="bench",
            roleArn="arn:aws:iam::123456789012:role/r",
            modelDataSource={"s3DataSource": {"s3Uri": "s3://bench/m/"}},
        )["jobArn"]
        while (job := bedrock.get_model_import_job(jobIdentifier=job_arn))["status"] == "InProgress":
            time.sleep(0.05)
        results["import_job_s"] = round(time.perf_counter() - started, 3)
        arn = job["importedModelArn"]

        body = json.dumps(
            {"prompt": "Once upon a time", "max_tokens": 64, "temperature": 0, "stop": ["\u2603"]}
        )
        started = time.perf_counter()
        while True:
            try:
                runtime.invoke_model(modelId=arn, body=body)
                break
            except runtime.exceptions.ModelNotReadyException:
                time.sleep(0.05)
        results["cold_start_first_answer_s"] = round(time.perf_counter() - started, 3)
        results["model_load_s"] = round(stack.service.pool.load_seconds(arn.rsplit("/", 1)[1]), 3)

        def one(_: int) -> tuple[float, int]:
            t0 = time.perf_counter()
            out = json.loads(runtime.invoke_model(modelId=arn, body=body)["body"].read())
            return time.perf_counter() - t0, out["usage"]["completion_tokens"]

        for concurrency in (1, 4):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                runs = list(pool.map(one, range(requests)))
            wall = time.perf_counter() - t0
            latencies = [r[0] for r in runs]
            results[f"concurrency_{concurrency}"] = {
                "requests": requests,
                "completion_tokens_each": sorted({r[1] for r in runs}),
                "requests_per_s": round(requests / wall, 3),
                "tokens_per_s": round(sum(r[1] for r in runs) / wall, 1),
                "p50_s": round(statistics.median(latencies), 3),
                "p95_s": round(_percentile(latencies, 0.95), 3),
            }
    finally:
        stack.stop()
    return results


if __name__ == "__main__":
    main()
