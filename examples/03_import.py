"""Import a merged model into Bedrock with BedrockImporter: the same code for AWS and the local Bedrock.

    python examples/03_import.py                       # offline: a local S3 and a local Bedrock
    python examples/03_import.py --model runs/merged \\
        --region us-east-1 --s3-uri s3://my-bucket/models/my-model/ \\
        --role-arn arn:aws:iam::111122223333:role/BedrockModelImport   # real AWS (it costs money)

Without --region it starts a LocalStack and imports the embedded model (SmolLM2-135M-Instruct, already
full precision) into the local Bedrock. With --region it talks to AWS with your usual credentials
(AWS_PROFILE, environment, SSO...): only the endpoints differ, not the code. Add --create-role NAME to
make a least-privilege import role first (IAM permissions needed), and --cleanup to delete the
imported model and its S3 files at the end.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from bedrock_ft import (
    AwsConfig,
    BedrockImporter,
    ConflictError,
    ImportConfig,
    ImportedModel,
    ImportedModels,
    PreflightError,
)


@contextlib.contextmanager
def _where(args: argparse.Namespace) -> Iterator[AwsConfig]:
    """AWS itself with --region; otherwise a local stack (its endpoints in the AwsConfig)."""
    if args.region:
        yield AwsConfig(region=args.region, profile=args.profile)
        return
    from bedrock_ft.local import LocalStack

    with LocalStack() as stack:
        aws = stack.aws_config()
        aws.client("s3").create_bucket(Bucket="example-models")
        yield aws


def _lifecycle(models: ImportedModels, imported: ImportedModel, *, cleanup: bool) -> None:
    """The lifecycle: ImportedModels needs only the control plane's permissions, no ImportConfig."""
    listed = [m.model_name for m in models.list()]
    print(f"imported models: {listed}")
    cost = models.estimate_cost(imported, price_per_cmu_minute=0.0785, active_minutes=60)
    print(f"one hour active at $0.0785/CMU-minute: ${cost.cost:.2f} ({cost.windows} windows)")
    if cleanup:
        deleted = models.delete(imported.model_arn or imported.model_name, delete_artifacts=True)
        print(f"deleted: {imported.model_name} and {len(deleted)} S3 objects")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", help="The merge's output directory, or a model directory (default: embedded)."
    )
    parser.add_argument("--region", help="Import into this AWS region (default: the local Bedrock).")
    parser.add_argument("--profile", help="AWS profile.")
    parser.add_argument("--s3-uri", default="s3://example-models/smollm2/", help="Where the files go.")
    parser.add_argument("--role-arn", default="arn:aws:iam::123456789012:role/BedrockModelImport")
    parser.add_argument("--create-role", metavar="NAME", help="Create (or update) this import role first.")
    parser.add_argument("--model-name", default="smollm2-example")
    parser.add_argument("--cleanup", action="store_true", help="Delete the model and its files at the end.")
    args = parser.parse_args()

    model = args.model
    if model is None:
        from bedrock_ft.models import embedded_model

        model = embedded_model()

    with _where(args) as aws:
        role_arn = args.role_arn
        if args.create_role or not args.region:
            from bedrock_ft.importing import create_import_role

            role_arn = create_import_role(args.create_role or "BedrockModelImport", args.s3_uri, aws=aws)
            print(f"import role: {role_arn}")
        config = ImportConfig(model_name=args.model_name, s3_uri=args.s3_uri, role_arn=role_arn, aws=aws)
        importer = BedrockImporter(config, progress=lambda step: print(f"  {step}"))

        imported = importer.import_model(model)
        print(f"imported: {imported.model_name} -> {imported.model_arn}")
        print(f"architecture: {imported.architecture}, {imported.cmus_per_copy} CMU per copy")
        print(f"invoke formats: {', '.join(imported.api_formats)}")
        up = imported.upload  # None when an earlier run already imported these files
        sent_mb = up.bytes_sent / 1e6 if up else 0.0
        print(f"upload: {len(up.sent) if up else 0} files, {sent_mb:.0f} MB")

        again = importer.import_model(model)
        sent = len(again.upload.sent if again.upload else [])
        print(f"again: same model {again.model_arn == imported.model_arn}, files sent {sent}")

        # Bad input fails before anything is sent: another model may not take the same name.
        other = config.replace(s3_uri=args.s3_uri.rstrip("/") + "-other/", model_tags={"variant": "b"})
        try:
            BedrockImporter(other).import_model(model)
        except ConflictError as exc:
            print(f"refused: {str(exc)[:60]}")
        broken = None
        try:
            from bedrock_ft.preflight import check_model_dir

            check_model_dir(str(model) + "-does-not-exist").raise_for_errors()
        except PreflightError as exc:
            broken = exc.findings[0].rule
        print(f"preflight on a missing directory: {broken}")

        _lifecycle(ImportedModels(aws), imported, cleanup=args.cleanup or not args.region)


if __name__ == "__main__":
    main()
