"""Upload throughput of BedrockImporter to the local S3 (moto's server), by concurrency.

    python benchmarks/upload.py                 # a 1 GB artifact (one shard), concurrency 1 and 8
    python benchmarks/upload.py --gb 2 --shards 4 --concurrency 1 4 8 16

The artifact is a model directory as AdapterMerger writes it: config, tokenizer and safetensors shards of
random bf16 values (random, so nothing on the way can compress it). Each run sends it to a fresh prefix
of a local stack with the importer's own upload path (hash check, plan, s3transfer multipart with
per-part CRC32, final verification). The baseline is concurrency 1, in the same run; plain
``boto3.upload_file`` with boto3's defaults is shown for reference. Every figure is MB (10^6 bytes) per
second of wall time for the upload itself; hashing, which runs once before any upload, is reported apart.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def make_artifact(directory: Path, gigabytes: float, shards: int) -> Path:
    import numpy as np

    from bedrock_ft.models import embedded_model

    source = embedded_model()
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        if (source / name).is_file():
            shutil.copy(source / name, directory / name)
    rng = np.random.default_rng(0)
    per_shard = int(gigabytes * 1e9 / shards) // 2 * 2
    weight_map: dict[str, str] = {}
    for i in range(1, shards + 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        tensor = f"model.layers.{i}.weight"
        header = json.dumps(
            {tensor: {"dtype": "BF16", "shape": [per_shard // 2], "data_offsets": [0, per_shard]}}
        )
        raw = header.encode() + b" " * (-len(header) % 8)
        with (directory / name).open("wb") as fh:
            fh.write(len(raw).to_bytes(8, "little") + raw)
            left = per_shard
            while left:
                block = min(left, 64 << 20)
                fh.write(rng.integers(0, 256, block, dtype=np.uint8).tobytes())
                left -= block
        weight_map[tensor] = name
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": per_shard * shards}, "weight_map": weight_map})
    )
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, default=1.0, help="artifact size in GB (10^9 bytes)")
    parser.add_argument(
        "--shards", type=int, default=1, help="safetensors shards (default: one, as a 2GB limit gives)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--chunksize", nargs="+", default=["16MiB"], help="part sizes to try, e.g. 8MiB 64MiB"
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per setting; the best is reported")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from bedrock_ft.importing import ImportConfig
    from bedrock_ft.importing import _upload as up
    from bedrock_ft.importing._importer import BedrockImporter
    from bedrock_ft.local import LocalStack

    results: dict[str, Any] = {"gb": args.gb, "shards": args.shards, "runs": []}
    with tempfile.TemporaryDirectory() as tmp, LocalStack() as stack:
        model = make_artifact(Path(tmp), args.gb, args.shards)
        total = sum(p.stat().st_size for p in model.iterdir())
        started = time.perf_counter()
        up.hash_files(model, None)
        results["hash_seconds"] = round(time.perf_counter() - started, 2)
        aws = stack.aws_config()
        s3 = aws.client("s3")
        s3.create_bucket(Bucket="bench")
        role = "arn:aws:iam::123456789012:role/Bench"

        def clear(prefix: str) -> None:
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket="bench", Prefix=prefix).get("Contents", [])]
            up.delete_keys(s3, "bench", keys)

        print(
            f"artifact: {total / 1e9:.2f} GB in {args.shards} shard(s); "
            f"sha256 of all files: {results['hash_seconds']} s"
        )
        for chunk, concurrency in ((c, n) for c in args.chunksize for n in args.concurrency):
            best = float("inf")
            for r in range(args.repeat):
                prefix = f"c{concurrency}-{r}/"
                cfg = ImportConfig(model_name="bench", s3_uri=f"s3://bench/{prefix}", role_arn=role, aws=aws,
                                   concurrency=concurrency, multipart_chunksize=chunk,
                                   multipart_threshold=chunk)  # fmt: skip
                importer = BedrockImporter(cfg)
                files = up.hash_files(model, None)
                report = importer._upload(importer._client("s3"), cfg, files)
                best = min(best, report["seconds"])
                clear(prefix)
            results["runs"].append(
                {
                    "chunksize": chunk,
                    "concurrency": concurrency,
                    "seconds": best,
                    "mb_per_s": total / 1e6 / best,
                }
            )
        # reference: boto3's upload_file with its defaults, file by file
        best = float("inf")
        for r in range(args.repeat):
            started = time.perf_counter()
            for path in sorted(model.iterdir()):
                s3.upload_file(str(path), "bench", f"plain-{r}/{path.name}")
            best = min(best, time.perf_counter() - started)
            clear(f"plain-{r}/")
        results["boto3_defaults"] = {"seconds": best, "mb_per_s": total / 1e6 / best}

    base = results["runs"][0]["seconds"]
    print(f"{'setting':<32}{'seconds':>9}{'MB/s':>9}{'speed-up':>10}")
    for run in results["runs"]:
        label = f"parts {run['chunksize']}, concurrency {run['concurrency']}"
        print(f"{label:<32}{run['seconds']:>9.2f}{run['mb_per_s']:>9.0f}{base / run['seconds']:>9.2f}x")
    ref = results["boto3_defaults"]
    print(
        f"{'boto3 upload_file defaults':<32}{ref['seconds']:>9.2f}{ref['mb_per_s']:>9.0f}"
        f"{base / ref['seconds']:>9.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
