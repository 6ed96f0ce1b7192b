"""Inside a SageMaker training job: ``python -m bedrock_ft.training.entrypoint train.json --sagemaker-job``.

Everything comes from the container's environment, never from literal ``/opt/ml`` paths:

- the dataset is the ``dataset`` channel (``SM_CHANNEL_DATASET``);
- the run directory lives in ``checkpoints/`` beside ``SM_MODEL_DIR``, which SageMaker syncs to the
  checkpoint URI and restores on a restart: a spot interruption or a re-run resumes from the last
  complete checkpoint;
- several GPUs (``SM_NUM_GPUS``) train with backend='accelerate', one GPU or none in this process;
- the adapter (with its manifest, metrics and run.json) goes to ``SM_MODEL_DIR/adapter/``, and with
  ``merge_in_job`` the merged bf16 export to ``SM_MODEL_DIR/merged/``; SageMaker uploads both
  uncompressed;
- an error is written to ``SM_OUTPUT_FAILURE``, which SageMaker reports as the job's ``FailureReason``.
"""

from __future__ import annotations

import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

__all__ = ["run_in_job"]

_KEEP_OUT = ("checkpoint-", "launch", "tensorboard")


def _say(message: str) -> None:
    print(message, flush=True)


def run_in_job(config: str) -> int:
    """Train (and merge) in the job; 0 on success, 1 with the failure file written."""
    model_dir = Path(os.environ["SM_MODEL_DIR"])
    root = model_dir.parent
    failure = Path(os.environ.get("SM_OUTPUT_FAILURE") or root / "output" / "failure")
    try:
        adapter_dir = _train(config, model_dir, root / "checkpoints")
    except BaseException as exc:  # every failure reaches the user as the job's FailureReason
        traceback.print_exc()
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(f"{type(exc).__name__}: {exc}"[:1000], encoding="utf-8")
        return 1
    _say(f"adapter written to {adapter_dir}")
    return 0


def _train(config: str, model_dir: Path, checkpoints: Path) -> Path:
    from bedrock_ft.config import load_stage_file
    from bedrock_ft.errors import TrainingError
    from bedrock_ft.training import TRAIN_LAYOUT, QLoRATrainer

    dataset = os.environ.get("SM_CHANNEL_DATASET")
    if not dataset:
        raise TrainingError("the job has no dataset channel (SM_CHANNEL_DATASET is unset)")
    settings = load_stage_file(config, TRAIN_LAYOUT, input=dataset)
    qlora, training = settings.configs["qlora"], settings.configs["training"]
    job = training.sagemaker
    gpus = int(os.environ.get("SM_NUM_GPUS") or 0)
    inner: dict[str, Any] = {
        "backend": "accelerate" if gpus > 1 else "local",
        "sagemaker": None,
        "output_dir": str(checkpoints / "run"),
        "resume": True,
        "overwrite": False,
    }
    if gpus <= 1:
        inner["strategy"] = "auto"
    _say(f"bedrock-ft in SageMaker job {os.environ.get('TRAINING_JOB_NAME', '?')}: {gpus} GPU(s), "
         f"backend {inner['backend']}")  # fmt: skip
    trainer = QLoRATrainer(qlora, training.replace(**inner), progress=_say, progress_bar=False)
    adapter = trainer.train(settings.input)
    run_dir = Path(training.replace(**inner).output_dir)
    target = model_dir / "adapter"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(run_dir, target, ignore=lambda _d, names: [n for n in names if n.startswith(_KEEP_OUT)])
    from bedrock_ft.artifacts import AdapterArtifact

    copied = AdapterArtifact.read(target)  # relative paths: the manifest moved with the run
    copied.model_copy(update={"checkpoint_dir": None}).write(target)
    if job is not None and job.merge_in_job:
        _merge(target, model_dir / "merged")
    del adapter
    return target


def _merge(adapter_dir: Path, out: Path) -> None:
    """``bedrock-ft merge``, as its own process: the merge stage's command, and the adapter's memory freed.
    (The training layer does not import the merging one.)"""
    import subprocess

    _say("merging the adapter into the base model (bf16, Bedrock's export)")
    command = [sys.executable, "-m", "bedrock_ft.cli", "merge", str(adapter_dir), "--output-dir", str(out),
               "--overwrite"]  # fmt: skip
    done = subprocess.run(command, stderr=subprocess.PIPE, text=True, check=False)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        from bedrock_ft.errors import TrainingError

        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise TrainingError(f"merge in the job failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    _say(f"merged model written to {out}")


if __name__ == "__main__":  # pragma: no cover - run through the entrypoint
    sys.exit(run_in_job(sys.argv[1]))
