"""Training with several processes: backend='accelerate' launches the ranks, DDP or FSDP-QLoRA.

    python examples/train_multi_process.py                 # 2 CPU processes (DDP over gloo), anywhere
    python examples/train_multi_process.py --strategy fsdp  # every visible GPU, FSDP-QLoRA (needs CUDA)

The launcher writes the accelerate config itself (run/launch/accelerate.yaml), starts
`accelerate launch -m bedrock_ft.training.entrypoint`, shows rank 0's progress here, and returns the
same AdapterArtifact a one-process run does. Each rank logs its steps to run/launch/rank-N.steps.jsonl.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bedrock_ft import QLoRAConfig, QLoRATrainer, TrainingConfig


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-model", default="embedded", help="Model directory, hub id or 'embedded'.")
    parser.add_argument("--strategy", default="auto", choices=["auto", "ddp", "fsdp"])
    parser.add_argument("--num-processes", type=int, default=None, help="Default: every GPU, or 2 on CPU.")
    parser.add_argument("--max-steps", type=int, default=4)
    args = parser.parse_args()

    from bedrock_ft.data import build_synthetic_dataset

    work = Path(tempfile.mkdtemp(prefix="multi-process-example-"))
    dataset = build_synthetic_dataset(work / "dataset", n=100, tokenizer="embedded")
    training = TrainingConfig(
        base_model=args.base_model,
        output_dir=str(work / "run"),
        backend="accelerate",
        strategy=args.strategy,
        num_processes=args.num_processes,
        max_steps=args.max_steps,
        max_length=256,
        per_device_batch_size=2,
        global_batch_size=None,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        logging_steps=1,
    )
    adapter = QLoRATrainer(QLoRAConfig(), training, progress=print).train(dataset)

    m = adapter.train_metrics
    print(f"ranks: {m.world_size}, strategy {m.strategy}, steps {m.global_step}")
    print(f"loss fell: {(m.final_loss or 0) < (m.first_loss or 0)}")
    steps = []  # per rank, per step: the batches it prepared (a later epoch may reuse another rank's)
    for rank in range(m.world_size):
        log = work / "run" / "launch" / f"rank-{rank}.steps.jsonl"
        steps.append([set(json.loads(line)["collated"]) for line in log.read_text().splitlines()])
    apart = all(not set.intersection(*same_step) for same_step in zip(*steps, strict=True))
    print(f"ranks trained on different batches: {apart}")
    print(f"adapter: {adapter.adapter_dir}")


if __name__ == "__main__":
    main()
