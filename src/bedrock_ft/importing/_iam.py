"""The service role Custom Model Import assumes to read the model files: least privilege, one call.

``create_import_role(name, s3_uri)`` makes (or updates) a role that only bedrock.amazonaws.com may
assume, only for model import jobs of this account, and that may only list and read the given S3
prefix (plus decrypt with the given KMS key, for SSE-KMS files). The policies follow the Bedrock user
guide's "Create a service role for model import".
"""

from __future__ import annotations

import json
import re
from typing import Any

from bedrock_ft.aws import AwsConfig, split_s3_uri
from bedrock_ft.errors import ConfigError, ConfigProblem, ResourceNotFoundError, translate_client_errors

__all__ = ["IMPORT_POLICY_NAME", "create_import_role", "import_role_policies"]

IMPORT_POLICY_NAME = "bedrock-ft-model-import"
"""Name of the role's inline permissions policy."""

_KMS_KEY_ARN = re.compile(r"^arn:(aws[a-z-]*):kms:[a-z0-9-]+:[0-9]{12}:key/[a-zA-Z0-9-]+$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


def import_role_policies(
    s3_uri: str,
    *,
    account_id: str,
    region: str | None = None,
    kms_key_arn: str | None = None,
    partition: str = "aws",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trust policy, permissions policy) for an import role reading ``s3_uri``.

    Trust: bedrock.amazonaws.com, only from ``account_id`` and only for its model import jobs
    (in ``region``, or any region when None). Permissions: s3:ListBucket limited to the prefix,
    s3:GetObject on the prefix's objects, both only in buckets of ``account_id``; kms:Decrypt on
    ``kms_key_arn`` when given.
    """
    problems = []
    if not s3_uri.startswith("s3://") or not s3_uri[5:].split("/", 1)[0]:
        problems.append(ConfigProblem("s3_uri", f"{s3_uri!r} is not an s3://bucket/prefix URI"))
    if not re.fullmatch(r"[0-9]{12}", account_id):
        problems.append(ConfigProblem("account_id", f"{account_id!r} is not a 12-digit account id"))
    if kms_key_arn is not None and not _KMS_KEY_ARN.match(kms_key_arn):
        problems.append(
            ConfigProblem(
                "kms_key_arn",
                f"{kms_key_arn!r} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); an alias "
                "can't grant decrypt",
            )
        )
    if problems:
        raise ConfigError(problems)
    bucket, prefix = split_s3_uri(s3_uri, folder=True)  # "models/m" must not also grant "models/m2/"
    source_arn = f"arn:{partition}:bedrock:{region or '*'}:{account_id}:model-import-job/*"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "BedrockModelImport",
                "Effect": "Allow",
                "Principal": {"Service": "bedrock.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account_id},
                    "ArnLike": {"aws:SourceArn": source_arn},
                },
            }
        ],
    }
    in_account = {"StringEquals": {"aws:ResourceAccount": account_id}}
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListModelPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:{partition}:s3:::{bucket}",
            "Condition": {
                **in_account,
                "StringLike": {"s3:prefix": [prefix, f"{prefix}*"] if prefix else ["*"]},
            },
        },
        {
            "Sid": "ReadModelFiles",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:{partition}:s3:::{bucket}/{prefix}*",
            "Condition": in_account,
        },
    ]
    if kms_key_arn:
        statements.append(
            {"Sid": "DecryptModelFiles", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": kms_key_arn}
        )
    return trust, {"Version": "2012-10-17", "Statement": statements}


def create_import_role(
    role_name: str,
    s3_uri: str,
    *,
    kms_key_arn: str | None = None,
    aws: AwsConfig | None = None,
    account_id: str | None = None,
    partition: str | None = None,
    description: str = "Lets Amazon Bedrock Custom Model Import read model files (made by bedrock-ft).",
) -> str:
    """Create the import service role, or bring an existing one's policies up to date; returns its ARN.

    The account id and partition come from STS (``GetCallerIdentity``) unless ``account_id`` is given
    (the partition is then ``partition``, default ``aws``).
    """
    if not _ROLE_NAME.match(role_name):
        raise ConfigError([ConfigProblem("role_name", f"{role_name!r}: 1-64 of letters, digits and +=,.@_-")])
    aws = aws or AwsConfig()
    if account_id is None:
        with translate_client_errors("GetCallerIdentity"):
            identity = aws.client("sts").get_caller_identity()
        account_id = str(identity["Account"])
        partition = partition or str(identity["Arn"]).split(":")[1] or "aws"
    trust, permissions = import_role_policies(
        s3_uri,
        account_id=account_id,
        region=aws.resolved_region(),
        kms_key_arn=kms_key_arn,
        partition=partition or "aws",
    )
    iam = aws.client("iam")
    try:
        with translate_client_errors("GetRole"):
            iam.get_role(RoleName=role_name)
        exists = True
    except ResourceNotFoundError:
        exists = False
    with translate_client_errors():
        if exists:
            iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(trust))
        else:
            iam.create_role(
                RoleName=role_name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=description,
                Tags=[{"Key": "created-by", "Value": "bedrock-ft"}],
            )
        iam.put_role_policy(
            RoleName=role_name, PolicyName=IMPORT_POLICY_NAME, PolicyDocument=json.dumps(permissions)
        )
        return str(iam.get_role(RoleName=role_name)["Role"]["Arn"])
