"""The remote path, rehearsed: train in a SageMaker job, merge in the job, import from its S3 output, invoke.

    python examples/sagemaker_training.py            # against the local stack: no AWS account needed
    python examples/sagemaker_training.py --detach   # submit, attach by name, then wait

The real sagemaker SDK submits the job (ModelTrainer); the local SageMaker in bedrock_ft.local runs its
own command in a subprocess, with this Python environment standing in for the training image. The job
trains the embedded model, merges the adapter and writes the merged model uncompressed to S3, and
BedrockImporter imports it from there with no download. On AWS, only the SageMakerConfig (a real role,
bucket and instance type) and ImportConfig's role change.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bedrock_ft import (
    BedrockImporter,
    ImportConfig,
    ImportedModelClient,
    QLoRAConfig,
    QLoRATrainer,
    TrainingConfig,
)
from bedrock_ft.local import LocalStack
from bedrock_ft.training import SageMakerConfig, SageMakerJob

TRAINING_ROLE = "arn:aws:iam::123456789012:role/bedrock-ft-training"
IMPORT_ROLE = "arn:aws:iam::123456789012:role/bedrock-ft-import"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--detach", action="store_true", help="submit, then attach to the job by name")
    parser.add_argument("--max-steps", type=int, default=2)
    args = parser.parse_args()

    from bedrock_ft.data import build_synthetic_dataset

    work = Path(tempfile.mkdtemp(prefix="sagemaker-example-"))
    dataset = build_synthetic_dataset(work / "dataset", n=40, tokenizer="embedded")
    with LocalStack(data_dir=work / "stack", checkpoint_sync_seconds=0.5) as stack:
        stack.aws_config().client("s3").create_bucket(Bucket="bedrock-ft-example")
        training = TrainingConfig(
            output_dir=str(work / "run"),
            max_steps=args.max_steps,
            max_length=256,
            backend="sagemaker",
            sagemaker=SageMakerConfig(
                role_arn=TRAINING_ROLE,
                output_s3_uri="s3://bedrock-ft-example/training",
                instance_type="ml.g5.2xlarge",
                merge_in_job=True,
                poll_interval_s=1.0,
            ),
        )
        trainer = QLoRATrainer(QLoRAConfig(), training, progress=print)
        if args.detach:
            job = trainer.submit(dataset)
            print(f"submitted {job.name}; attaching to it by name")
            adapter = SageMakerJob.attach(job.name, poll_interval=1.0, progress=print).wait(
                output_dir=training.output_dir
            )
        else:
            adapter = trainer.train(dataset)
        print(f"training job: {adapter.training_job}")
        print(f"adapter: {adapter.adapter_dir} ({adapter.train_metrics.global_step} steps)")
        merged = adapter.merged_model_artifact()
        assert merged is not None
        print(f"merged model in S3: {merged.model_dir}")

        imported = BedrockImporter(
            ImportConfig(model_name="sagemaker-example", role_arn=IMPORT_ROLE, poll_interval=0.5),
            progress=print,
        ).import_model(merged)
        print(f"imported: {imported.model_arn}")
        client = ImportedModelClient(imported)
        answer = client.chat([{"role": "user", "content": "What is the capital of France?"}], max_tokens=16)
        print(f"answer: {answer.text!r}")


if __name__ == "__main__":
    main()
