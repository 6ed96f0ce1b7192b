"""Evaluator: the fast engine against fmeval's own evaluate() on the same 200 records.

    OMP_NUM_THREADS=2 python benchmarks/evaluator.py [--records 200] [--max-tokens 16]

Prints one JSON object. Each engine runs in a fresh child process (so Ray's start-up is counted, and no
run inherits another's memory), timed from the child's start to its exit; peak RSS is sampled every
50 ms over the child and all its descendants (Ray's raylet, GCS and workers included). Two targets:

1. ``callable``: a function answering from the dataset at once: the evaluator's own overhead;
2. ``model``: the embedded model imported into a local Bedrock (served by this parent process, so its
   memory is not counted), asked through ImportedModelClient over real HTTP, greedy.

Both engines must produce the same scores; the figures include that check. (The file is not called
evaluate.py: run as a script, its folder comes first on sys.path, and it would shadow the ``evaluate``
package that fmeval imports.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROLE = "arn:aws:iam::123456789012:role/BedrockModelImport"


def _child(args: argparse.Namespace) -> None:
    """One evaluation, in this (child) process; prints its report's scores as JSON."""
    from bedrock_ft import EvalConfig, Evaluator, ImportedModelClient, InvokeConfig, load_artifact

    config = EvalConfig(engine=args.engine, max_tokens=args.max_tokens, progress_bar=False)
    if args.target == "callable":
        rows = [json.loads(line) for line in Path(args.dataset).read_text().splitlines()]
        answers = {r["question"]: r["answer"] for r in rows}
        target: Any = lambda prompt: answers[prompt] if len(prompt) % 3 else "not " + answers[prompt]  # noqa: E731
    else:
        target = ImportedModelClient(load_artifact(args.model), InvokeConfig())  # type: ignore[arg-type]
    report = Evaluator(config).evaluate(target, args.dataset)
    print(json.dumps({"scores": report.scores, "errors": report.error_count, "timings": report.timings}))


def _measure(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        with contextlib.suppress(psutil.Error):
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a process that just ended
                    total += p.memory_info().rss
        peak = max(peak, total)
        time.sleep(0.05)
    out = proc.stdout.read() if proc.stdout else ""
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed with status {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": round(seconds, 1), "peak_rss_gib": round(peak / 2**30, 2), **result}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--targets", default="callable,model")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    from bedrock_ft.data import synthetic_qa
    from bedrock_ft.importing import BedrockImporter, ImportConfig
    from bedrock_ft.local import LocalBedrockConfig, LocalStack
    from bedrock_ft.models import embedded_model

    work = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    dataset = work / "qa.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in synthetic_qa(args.records, seed=3)))
    report: dict[str, Any] = {"records": args.records, "max_tokens": args.max_tokens, "cpus": os.cpu_count()}
    config = LocalBedrockConfig(idle_unload_seconds=None, data_dir=work / "bedrock")
    with LocalStack(config) as stack:
        aws = stack.aws_config()
        aws.client("s3").create_bucket(Bucket="bench")
        settings = ImportConfig(model_name="bench-eval", s3_uri="s3://bench/m/", role_arn=ROLE, aws=aws)
        imported = BedrockImporter(settings).import_model(embedded_model())
        manifest = imported.write(work / "imported")
        env = {**os.environ, **stack.env}
        for target in args.targets.split(","):
            runs = {}
            for engine in ("fast", "fmeval"):
                argv = [sys.executable, __file__, "--child", "--engine", engine, "--target", target]
                argv += [
                    "--dataset",
                    str(dataset),
                    "--model",
                    str(manifest),
                    "--max-tokens",
                    str(args.max_tokens),
                ]
                runs[engine] = _measure(argv, env)
                print(f"{target} {engine}: {runs[engine]}", file=sys.stderr)
            fast, own = runs["fast"], runs["fmeval"]
            report[target] = {
                **runs,
                "same_scores": fast["scores"] == own["scores"],
                "fmeval_over_fast_wall": round(own["wall_s"] / fast["wall_s"], 2),
                "fmeval_over_fast_rss": round(own["peak_rss_gib"] / fast["peak_rss_gib"], 2),
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
