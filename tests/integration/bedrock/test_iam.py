"""create_import_role against moto's IAM and STS, over HTTP."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest

from bedrock_ft import ConfigError
from bedrock_ft.importing import create_import_role
from bedrock_ft.importing._iam import IMPORT_POLICY_NAME
from bedrock_ft.local import LocalStack

from .conftest import RequestLog

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _document(value: Any) -> dict[str, Any]:
    """IAM returns policy documents URL-encoded (real IAM) or already parsed (boto3 decodes them)."""
    return value if isinstance(value, dict) else dict(json.loads(unquote(value)))


def test_role_trusts_only_bedrock_import_jobs_and_reads_only_the_prefix(
    stack: LocalStack, request_log: RequestLog
) -> None:
    aws = stack.aws_config()
    arn = create_import_role("BedrockFtImport", "s3://models/team/llm/", aws=aws)
    assert arn == "arn:aws:iam::123456789012:role/BedrockFtImport"

    iam = aws.client("iam")
    role = iam.get_role(RoleName="BedrockFtImport")["Role"]
    [trust] = _document(role["AssumeRolePolicyDocument"])["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"},
        "ArnLike": {"aws:SourceArn": "arn:aws:bedrock:us-east-1:123456789012:model-import-job/*"},
    }
    policy = _document(
        iam.get_role_policy(RoleName="BedrockFtImport", PolicyName=IMPORT_POLICY_NAME)["PolicyDocument"]
    )
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"ListModelPrefix", "ReadModelFiles"}  # no KMS without a key
    assert by_sid["ReadModelFiles"]["Action"] == "s3:GetObject"
    assert by_sid["ReadModelFiles"]["Resource"] == "arn:aws:s3:::models/team/llm/*"
    assert by_sid["ListModelPrefix"]["Resource"] == "arn:aws:s3:::models"
    assert by_sid["ListModelPrefix"]["Condition"]["StringLike"] == {"s3:prefix": ["team/llm/", "team/llm/*"]}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert not any(s.get("Resource") == "*" or s["Action"] in ("s3:*", "*") for s in policy["Statement"])

    # Again, with a KMS key: the same role, updated in place, now allowed to decrypt with that key only.
    assert create_import_role("BedrockFtImport", "s3://models/team/llm/", kms_key_arn=KEY, aws=aws) == arn
    policy = _document(
        iam.get_role_policy(RoleName="BedrockFtImport", PolicyName=IMPORT_POLICY_NAME)["PolicyDocument"]
    )
    kms = next(s for s in policy["Statement"] if s["Sid"] == "DecryptModelFiles")
    assert kms == {"Sid": "DecryptModelFiles", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY}
    assert [r["RoleName"] for r in iam.list_roles()["Roles"]].count("BedrockFtImport") == 1
    assert {"sts.GetCallerIdentity", "iam.CreateRole", "iam.PutRolePolicy"} <= set(request_log.operations)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"role_name": "no spaces allowed"}, "role_name"),
        ({"kms_key_arn": "alias/my-key"}, "kms_key_arn"),
        ({"s3_uri": "models/llm"}, "s3_uri"),
    ],
)
def test_bad_input_names_the_argument(stack: LocalStack, kwargs: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {"role_name": "R", "s3_uri": "s3://models/llm/", **kwargs}
    with pytest.raises(ConfigError) as info:
        create_import_role(
            arguments.pop("role_name"), arguments.pop("s3_uri"), aws=stack.aws_config(), **arguments
        )
    assert [p.path for p in info.value.problems] == [field]
    assert stack.aws_config().client("iam").list_roles()["Roles"] == []
