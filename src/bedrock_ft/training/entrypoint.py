"""The one training entrypoint: ``python -m bedrock_ft.training.entrypoint CONFIG [--dataset PATH]``.

``CONFIG`` is a ``bedrock-ft train`` config file (YAML, TOML or JSON): ``dataset`` (a dataset
artifact's directory or manifest), and the ``qlora`` and ``training`` sections. Every backend runs
this module:

- run directly, it trains as ``QLoRATrainer(qlora, training).train(dataset)`` does: in this process
  (``backend: local``), or by launching ranks (``backend: accelerate``);
- each rank the launcher starts runs it too, as one rank of the run;
- a SageMaker training job runs it with the config file as its input and ``--sagemaker-job``: the
  dataset, checkpoints and outputs then come from the container's ``SM_*`` variables.

Exit status: 0 when the adapter is written (its manifest path is printed), 1 with the error otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bedrock_ft.training.entrypoint",
        description="Train a QLoRA adapter from one config file (dataset, qlora, training).",
    )
    parser.add_argument("config", help="a train config file: dataset, qlora and training sections")
    parser.add_argument("--dataset", help="the dataset artifact (directory or manifest), over the file's")
    parser.add_argument(
        "--sagemaker-job",
        action="store_true",
        help="run as a SageMaker training job's command: data, checkpoints and outputs from SM_* variables",
    )
    args = parser.parse_args(argv)
    if args.sagemaker_job:
        from bedrock_ft.training._sm_job import run_in_job

        return run_in_job(args.config)

    from bedrock_ft.errors import BedrockFTError
    from bedrock_ft.training._distributed import emit_event, launched_rank, redirect_output, write_rank_error

    rank = None
    try:
        rank = launched_rank()
        if rank is not None:
            redirect_output(rank)
            watch_launcher_of(rank)
        from bedrock_ft.config import load_stage_file
        from bedrock_ft.training import TRAIN_LAYOUT, QLoRATrainer

        settings = load_stage_file(args.config, TRAIN_LAYOUT, input=args.dataset)

        def say(message: str) -> None:
            if rank is not None and rank.is_main:
                emit_event({"event": "say", "message": message})
            else:
                print(message, file=sys.stderr, flush=True)

        trainer = QLoRATrainer(
            settings.configs["qlora"],
            settings.configs["training"],
            progress=say,
            progress_bar=False if rank is not None else None,
        )
        artifact_path = trainer.train(settings.input)
    except BaseException as exc:
        if rank is not None:
            write_rank_error(rank, exc)
        if isinstance(exc, BedrockFTError) and rank is None:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
    if rank is None:
        print(f"adapter: {artifact_path.adapter_dir}")
    return 0


def watch_launcher_of(rank: Any) -> None:
    import os

    from bedrock_ft.training._distributed import PARENT_ENV, watch_launcher

    pid = os.environ.get(PARENT_ENV, "")
    if pid.isdigit():
        watch_launcher(int(pid))


if __name__ == "__main__":
    sys.exit(main())
