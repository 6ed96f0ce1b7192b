"""A load test of the invoke path: many requests at high concurrency while other processes load every core.

    OMP_NUM_THREADS=2 python benchmarks/invoke_load.py                      # 1,000 requests, 32 at a time
    python benchmarks/invoke_load.py --bursts 20 --pause 5   # idle gaps: the keep-alive race
    python benchmarks/invoke_load.py --requests 200 --concurrency 8 --no-load

It starts a LocalStack, imports the embedded model, warms it up, starts one busy process per core, and
sends ``--requests`` completions (4 tokens each) from ``--concurrency`` threads through one
``ImportedModelClient``: the same client, HTTP server and connection pool as a real run. It reports
p50/p95 latency, the retries by kind, and the requests lost (failed after every retry). A lost request is
what the dropped-connection retry and the server's keep-alive setting exist to prevent.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def _spin(stop: Any) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-load", action="store_true", help="Leave the cores to the server.")
    parser.add_argument(
        "--bursts", type=int, default=1,
        help="Send the requests in this many bursts, idle --pause seconds apart (pooled connections idle).",
    )  # fmt: skip
    parser.add_argument("--pause", type=float, default=5.0, help="Idle seconds between bursts.")
    args = parser.parse_args()

    from bedrock_ft.importing import BedrockImporter, ImportConfig
    from bedrock_ft.local import LocalStack
    from bedrock_ft.models import embedded_model
    from bedrock_ft.runtime import ImportedModelClient, InvokeConfig, RetryEvent

    with LocalStack(idle_unload_seconds=None) as stack:
        aws = stack.aws_config()
        aws.client("s3").create_bucket(Bucket="load")
        settings = ImportConfig(
            model_name="load", s3_uri="s3://load/m/", role_arn="arn:aws:iam::123456789012:role/R", aws=aws,
            poll_interval=0.5,
        )  # fmt: skip
        imported = BedrockImporter(settings).import_model(embedded_model())
        retries: Counter[str] = Counter()

        def on_retry(event: RetryEvent) -> None:
            retries[event.kind] += 1

        client = ImportedModelClient(
            imported, InvokeConfig(aws=aws, max_concurrency=args.concurrency), on_retry=on_retry
        )
        client.warm_up()
        stop = multiprocessing.Event()
        cores = 0 if args.no_load else os.cpu_count() or 2
        busy = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(cores)]
        for proc in busy:
            proc.start()
        latencies: list[float] = []
        lost: list[str] = []

        def one(i: int) -> None:
            started = time.perf_counter()
            try:
                client.complete(f"Question {i}: what is {i} plus 1?", max_tokens=4, temperature=0)
            except Exception as exc:  # a lost request: counted, with its error
                lost.append(f"{type(exc).__name__}: {exc}")
                return
            latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        size = -(-args.requests // args.bursts)
        with ThreadPoolExecutor(args.concurrency) as pool:
            for burst in range(args.bursts):
                if burst:
                    time.sleep(args.pause)  # every pooled connection sits idle this long
                list(pool.map(one, range(burst * size, min(args.requests, (burst + 1) * size))))
        wall = time.perf_counter() - started
        stop.set()
        for proc in busy:
            proc.join(timeout=5)

    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [float("nan")] * 19
    print(
        f"requests {args.requests}, concurrency {args.concurrency}, busy processes {len(busy)}, "
        f"bursts {args.bursts} ({args.pause:g} s apart)"
    )
    print(
        f"answered {len(latencies)}, lost {len(lost)}, wall {wall:.1f} s, {len(latencies) / wall:.1f} req/s"
    )
    print(f"latency p50 {statistics.median(latencies):.2f} s, p95 {q[18]:.2f} s")
    print(f"retries: {dict(retries) or 'none'}")
    for error in Counter(lost).most_common(5):
        print(f"lost: {error}")


if __name__ == "__main__":
    main()
