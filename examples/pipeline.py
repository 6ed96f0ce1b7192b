"""Run the whole pipeline from Python, with a dataset step of your own, then re-run it.

    python examples/pipeline.py                       # a temporary run directory (~1 minute on 2 cores)
    python examples/pipeline.py --run-dir runs/mine   # keep it: a second run skips every stage

``Pipeline(PipelineConfig)`` runs dataset -> train -> merge -> import -> invoke into one run directory on
the local stack (``target: local``). Here the dataset stage is replaced by a function of our own (any
``StageContext -> Artifact`` function plugs in the same way), and a stage is added after the import. The
second run finds every stage unchanged; changing the learning rate redoes training and what follows it,
but not the dataset.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bedrock_ft import Pipeline, PipelineConfig
from bedrock_ft.artifacts import DatasetArtifact
from bedrock_ft.pipeline import StageContext

SETTINGS: dict[str, Any] = {
    "name": "example",
    "target": "local",
    "dataset": {"tokenizer": "embedded", "test_size": 0.2},  # no source: our own step makes the records
    "training": {
        "max_steps": 4, "max_length": 256, "per_device_batch_size": 4, "learning_rate": 1e-3,
        "warmup_ratio": 0.0, "save_steps": 4, "gradient_checkpointing": False,
    },
    "merge": {"verify": False},
    "import": {"poll_interval": 0.5},
    "invoke": {"prompts": ["What is 2 + 3?"], "max_tokens": 16, "complete": False},
}  # fmt: skip


def my_dataset(ctx: StageContext) -> DatasetArtifact:
    """A dataset step of our own: records from anywhere, through DatasetBuilder."""
    from bedrock_ft.data import DatasetBuilder

    records = [{"question": f"What is {a} + {b}?", "answer": str(a + b)} for a in range(10) for b in range(8)]
    assert ctx.config.dataset is not None
    config = ctx.config.dataset.replace(source=None, format="qa")
    return DatasetBuilder(config, source=records, progress=ctx.say).build()


def answer_length(ctx: StageContext) -> dict[str, Any]:
    """An added stage: it reads the smoke test's answers."""
    answers = ctx.input("invoke")["answers"]
    return {"characters": sum(len(a["answer"]) for a in answers)}


def run(run_dir: Path, learning_rate: float) -> Any:
    settings = {**SETTINGS, "run_dir": str(run_dir)}
    settings["training"] = {**SETTINGS["training"], "learning_rate": learning_rate}
    pipeline = Pipeline(PipelineConfig.from_dict(settings), stages={"dataset": my_dataset})
    pipeline.add_stage("answer_length", answer_length, after="invoke", needs=["invoke"])
    for step in pipeline.plan():
        print(f"  plan: {step.stage:13} {step.action:4} {step.reason}")
    return pipeline.run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", type=Path, help="Run directory (default: a temporary one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or Path(tmp) / "run"
        print("first run:")
        first = run(run_dir, 1e-3)
        print(f"records: {first['dataset'].record_counts}")
        print(f"answer: {first['invoke']['answers'][0]['answer']!r}")
        print("second run, nothing changed:")
        second = run(run_dir, 1e-3)
        print(f"stages run again: {[row[0] for row in second.table() if row[1] == 'ran']}")
        print("third run, another learning rate:")
        third = run(run_dir, 2e-3)
        print(f"stages run again: {[row[0] for row in third.table() if row[1] == 'ran']}")


if __name__ == "__main__":
    main()
