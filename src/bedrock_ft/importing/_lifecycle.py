"""ImportedModels: what the control plane says about imported models, and deleting them.

Get, list and delete, the chat facts read from the files a model was imported from, and what serving
it costs. :class:`~bedrock_ft.importing.BedrockImporter` and
:class:`~bedrock_ft.runtime.ImportedModelClient` both describe models through it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from bedrock_ft.artifacts import ImportedModel
from bedrock_ft.aws import AwsConfig, split_s3_uri
from bedrock_ft.errors import (
    AccessDeniedError,
    ArtifactError,
    BedrockFTError,
    RequestValidationError,
    ResourceNotFoundError,
    translate_client_errors,
)
from bedrock_ft.importing import _upload
from bedrock_ft.importing._chat_facts import chat_facts
from bedrock_ft.importing._cost import CostEstimate, estimate_cost

__all__ = ["ImportedModels", "overlap", "validate_params"]

Say = Callable[[str], None]


class ImportedModels:
    """The imported models of one account and region (``aws``): describe, list, delete, cost.

    Needs only the ``bedrock`` control plane's read permissions (and ``s3:GetObject`` on the imported
    files for :meth:`chat_facts`); deleting needs ``bedrock:DeleteImportedModel``.
    """

    def __init__(self, aws: AwsConfig | None = None, *, progress: Say | None = None) -> None:
        self.aws = aws or AwsConfig()
        self._say: Say = progress or (lambda message: None)

    def get(self, identifier: str) -> ImportedModel:
        """An imported model, by name or ARN (:class:`ResourceNotFoundError` when there is none)."""
        validate_params("GetImportedModel", {"modelIdentifier": identifier})
        with translate_client_errors("GetImportedModel"):
            response = self.aws.client("bedrock").get_imported_model(modelIdentifier=identifier)
        return self._imported(response)

    def find(self, name: str) -> ImportedModel | None:
        """The imported model called ``name``, or None."""
        try:
            return self.get(name)
        except ResourceNotFoundError:
            return None

    def list(self, name_contains: str | None = None) -> builtins.list[ImportedModel]:
        """Every imported model (newest first), optionally those whose name contains ``name_contains``."""
        kwargs: dict[str, Any] = {"nameContains": name_contains} if name_contains else {}
        if kwargs:
            validate_params("ListImportedModels", kwargs)
        summaries: builtins.list[dict[str, Any]] = []
        with translate_client_errors("ListImportedModels"):
            pages = self.aws.client("bedrock").get_paginator("list_imported_models").paginate(**kwargs)
            for page in pages:
                summaries.extend(page.get("modelSummaries", []))
        return [
            ImportedModel(
                model_arn=s["modelArn"],
                model_name=s["modelName"],
                architecture=s.get("modelArchitecture"),
                instruct_supported=s.get("instructSupported"),
                creation_time=s.get("creationTime"),
                region=self.aws.resolved_region(),
                endpoint_url=self.aws.endpoint_for("bedrock"),
            )
            for s in summaries
        ]

    def describe(self, identifier: str) -> ImportedModel:
        """:meth:`get`, plus the chat template, special tokens and BOS handling read from the files it
        was imported from (best effort: without ``s3:GetObject`` there, they stay unknown and the
        reason goes to ``progress``)."""
        model = self.get(identifier)
        try:
            facts = self.chat_facts(model)
        except BedrockFTError as exc:
            self._say(f"chat template not read from {model.s3_uri}: {exc}")
            return model
        return model.model_copy(update={k: v for k, v in facts.items() if v is not None})

    def chat_facts(self, model: ImportedModel) -> dict[str, Any]:
        """The chat template, special tokens and BOS handling of an imported model, read from the
        tokenizer files in the S3 prefix it was imported from (needs ``s3:GetObject`` there)."""
        if not model.s3_uri:
            return {}
        bucket, prefix = split_s3_uri(model.s3_uri, folder=True)
        s3 = self.aws.client("s3")

        def read(name: str) -> bytes | None:
            try:
                with translate_client_errors("GetObject"):
                    body: bytes = s3.get_object(Bucket=bucket, Key=f"{prefix}{name}")["Body"].read()
                    return body
            except ResourceNotFoundError:
                return None
            except AccessDeniedError:  # S3 says 403 for a missing key unless s3:ListBucket is granted
                if name == "tokenizer_config.json":
                    raise
                return None

        return chat_facts(read)

    def delete(self, identifier: str, *, delete_artifacts: bool = False) -> builtins.list[str]:
        """Delete an imported model; with ``delete_artifacts`` also the S3 files it was imported from.

        Returns the S3 URIs deleted. Files under a prefix another imported model was imported from (the
        same prefix, a parent or a child) are kept.
        """
        model = self.get(identifier)
        others: builtins.list[str] = []
        if delete_artifacts and model.s3_uri:
            for other in self.list():
                if other.model_arn == model.model_arn:
                    continue
                try:
                    source = self.get(other.model_arn or other.model_name).s3_uri
                except ResourceNotFoundError:  # deleted meanwhile
                    continue
                if source and overlap(source, model.s3_uri):
                    others.append(other.model_name)
        self._say(f"deleting imported model {model.model_name} ({model.model_arn})")
        with translate_client_errors("DeleteImportedModel"):
            self.aws.client("bedrock").delete_imported_model(modelIdentifier=model.model_arn)
        if not delete_artifacts or not model.s3_uri:
            return []
        if others:
            self._say(f"kept {model.s3_uri}: imported model(s) {', '.join(others)} came from it too")
            return []
        bucket, prefix = split_s3_uri(model.s3_uri, folder=True)
        if not prefix:
            self._say(f"kept {model.s3_uri}: a whole bucket is never deleted")
            return []
        s3 = self.aws.client("s3")
        with translate_client_errors():
            keys = list(_upload.remote_objects(s3, bucket, prefix))
            _upload.abort_stale_uploads(s3, bucket, prefix)
            _upload.delete_keys(s3, bucket, keys)
        self._say(f"deleted {len(keys)} object(s) under {model.s3_uri}")
        return [f"s3://{bucket}/{key}" for key in sorted(keys)]

    def estimate_cost(
        self,
        model: ImportedModel | str,
        *,
        price_per_cmu_minute: float,
        active_minutes: float,
        copies: int = 1,
    ) -> CostEstimate:
        """What ``active_minutes`` of serving cost: CMUs x copies x price per CMU-minute, billed in
        5-minute windows. The price varies by region: take it from the Bedrock pricing page."""
        if isinstance(model, str):
            model = self.get(model)
        if model.cmus_per_copy is None:
            model = self.get(model.model_arn or model.model_name)
        if model.cmus_per_copy is None:
            raise ArtifactError(
                f"Bedrock reports no Custom Model Units for {model.model_name}; is it imported?"
            )
        return estimate_cost(
            model.cmus_per_copy,
            price_per_cmu_minute=price_per_cmu_minute,
            active_minutes=active_minutes,
            copies=copies,
        )

    def _imported(self, response: dict[str, Any]) -> ImportedModel:
        units = (response.get("customModelUnits") or {}).get("customModelUnitsPerModelCopy")
        model = ImportedModel(
            model_arn=response["modelArn"],
            model_name=response["modelName"],
            job_arn=response.get("jobArn"),
            job_name=response.get("jobName"),
            s3_uri=(response.get("modelDataSource") or {}).get("s3DataSource", {}).get("s3Uri"),
            creation_time=response.get("creationTime"),
            architecture=response.get("modelArchitecture"),
            instruct_supported=response.get("instructSupported"),
            cmus_per_copy=units,
            region=self.aws.resolved_region(),
            endpoint_url=self.aws.endpoint_for("bedrock"),
        )
        return model.model_copy(update={"api_formats": model.accepted_formats()})


def validate_params(operation: str, params: dict[str, Any]) -> None:
    """Refuse a request botocore would send but the service would refuse (botocore skips patterns and
    lengths): :class:`RequestValidationError` with the service model's own wording."""
    from bedrock_ft._shapes import input_errors

    errors = input_errors("bedrock", operation, params)
    if errors:
        raise RequestValidationError(f"{operation} would be refused: {'; '.join(errors)}")


def overlap(a: str, b: str) -> bool:
    """Whether two S3 locations share objects: the same prefix, or one inside the other."""
    (bucket_a, prefix_a), (bucket_b, prefix_b) = split_s3_uri(a, folder=True), split_s3_uri(b, folder=True)
    return bucket_a == bucket_b and (prefix_a.startswith(prefix_b) or prefix_b.startswith(prefix_a))
