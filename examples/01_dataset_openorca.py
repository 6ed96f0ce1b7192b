"""The seed's dataset recipe with DatasetBuilder: OpenOrca -> keep the "flan" rows -> a seeded 3.5% / 1%
train/test split -> system_prompt/question/response as chat messages -> JSON Lines.

    python examples/01_dataset_openorca.py                           # offline, on an OpenOrca-shaped sample
    python examples/01_dataset_openorca.py --source Open-Orca/OpenOrca --output s3://my-bucket/datasets/flan

Without --source it first writes 4,000 synthetic OpenOrca-shaped records to a local JSONL file, so it
runs anywhere (no hub access needed). The chat template is the seed's Human/Assistant one, for parity
with its notebook; the artifact records it, so training, invoke and evaluation all use the same one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bedrock_ft.data import DatasetBuilder, DatasetConfig, summarize, synthetic_openorca


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source", help="Hub id, local file or s3:// URI (default: a synthetic sample).")
    parser.add_argument("--output", help="Local directory or s3:// prefix (default: a temp directory).")
    parser.add_argument("--tokenizer", default="embedded", help="For token statistics (default: embedded).")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="openorca-example-"))
    source = args.source
    if source is None:
        source = str(work / "openorca-sample.jsonl")
        with Path(source).open("w", encoding="utf-8") as fh:
            for record in synthetic_openorca(4000, seed=0):
                fh.write(json.dumps(record) + "\n")
        print(f"wrote an OpenOrca-shaped sample: {source}")

    config = DatasetConfig(
        source=source,
        format="openorca",  # system_prompt / question / response -> system, user, assistant
        id_contains="flan",  # the seed keeps only the FLAN part of OpenOrca
        train_size=0.035,
        test_size=0.01,
        seed=42,
        chat_template="human_assistant",
        tokenizer=args.tokenizer,
        max_length=2048,
        output=args.output or str(work / "dataset"),
    )
    artifact = DatasetBuilder(config, progress=lambda step: print(f"[dataset] {step}")).build()

    for line in summarize(artifact):
        print(line)
    if artifact.train_uri.startswith("s3://"):
        return
    first = json.loads(Path(artifact.train_uri).read_text(encoding="utf-8").splitlines()[0])
    print("first training record:", [f"{m['role']}: {m['content'][:40]}..." for m in first["messages"]])
    written = sorted(p.name for p in Path(artifact.train_uri).parent.iterdir())
    print(f"files: {', '.join(written)}")


if __name__ == "__main__":
    main()
