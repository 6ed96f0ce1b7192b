from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ProfileNotFound,
    ReadTimeoutError,
)

from bedrock_ft import errors as E
from bedrock_ft.preflight import Finding, Severity


def client_error(code: str, message: str = "boom", status: int = 400, op: str = "InvokeModel") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "req-123"},
        },
        op,
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ModelNotReadyException", E.ModelNotReadyError),
        ("ThrottlingException", E.ThrottledError),
        ("ModelTimeoutException", E.ModelTimeoutError),
        ("ModelErrorException", E.ModelError),
        ("AccessDeniedException", E.AccessDeniedError),
        ("ResourceNotFoundException", E.ResourceNotFoundError),
        ("NoSuchBucket", E.ResourceNotFoundError),
        ("ConflictException", E.ConflictError),
        ("ServiceQuotaExceededException", E.QuotaExceededError),
        ("ValidationException", E.RequestValidationError),
        ("ServiceUnavailableException", E.ServiceUnavailableError),
        ("InternalServerException", E.ServiceUnavailableError),
        ("ExpiredTokenException", E.AccessDeniedError),
        ("UnrecognizedClientException", E.AccessDeniedError),
        ("403", E.AccessDeniedError),
        ("SomethingNew", E.AwsError),
    ],
)
def test_client_error_codes_map_to_our_types(code: str, expected: type[E.BedrockFTError]) -> None:
    mapped = E.map_client_error(client_error(code, "the details"))
    assert type(mapped) is expected
    assert isinstance(mapped, E.BedrockFTError)
    assert mapped.aws is not None
    assert mapped.aws.code == code
    assert mapped.aws.message == "the details"
    assert mapped.aws.operation == "InvokeModel"
    assert mapped.aws.status_code == 400
    assert mapped.aws.request_id == "req-123"
    assert str(mapped) == f"InvokeModel: {code}: the details"


def test_an_unlisted_server_error_is_transient_and_an_unlisted_client_error_is_not() -> None:
    assert type(E.map_client_error(client_error("SomethingNew", status=502))) is E.ServiceUnavailableError
    assert type(E.map_client_error(client_error("SomethingNew", status=409))) is E.AwsError


def test_runtime_errors_are_invocation_errors() -> None:
    for code in ("ModelNotReadyException", "ThrottlingException", "ModelTimeoutException"):
        assert isinstance(E.map_client_error(client_error(code)), E.InvocationError)


def test_errors_also_behave_like_builtins() -> None:
    assert issubclass(E.ConfigError, ValueError)
    assert issubclass(E.DatasetError, ValueError)
    assert issubclass(E.PreflightError, ValueError)
    assert issubclass(E.TrainingError, RuntimeError)
    assert issubclass(E.AccessDeniedError, PermissionError)
    assert issubclass(E.ResourceNotFoundError, LookupError)
    assert issubclass(E.EndpointUnreachableError, ConnectionError)


def test_connection_credentials_and_region_problems_are_explained() -> None:
    unreachable = E.map_client_error(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert isinstance(unreachable, E.EndpointUnreachableError)
    assert "AWS_ENDPOINT_URL_<SERVICE>" in str(unreachable)
    assert isinstance(E.map_client_error(NoCredentialsError()), E.AccessDeniedError)
    region = E.map_client_error(NoRegionError())
    assert isinstance(region, E.ConfigError)
    assert region.problems[0].path == "aws.region"


def test_client_side_problems_are_explained() -> None:
    invalid = E.map_client_error(ParamValidationError(report="Invalid length for parameter modelId"))
    assert isinstance(invalid, E.RequestValidationError) and "modelId" in str(invalid)
    profile = E.map_client_error(ProfileNotFound(profile="prod"))
    assert isinstance(profile, E.ConfigError) and profile.problems[0].path == "aws.profile"
    slow = E.map_client_error(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert isinstance(slow, E.ServiceUnavailableError) and "read_timeout" in str(slow)


def test_translate_client_errors_keeps_the_cause() -> None:
    original = client_error("ThrottlingException", op="Converse")
    with pytest.raises(E.ThrottledError) as info, E.translate_client_errors():
        raise original
    assert info.value.__cause__ is original


def test_translate_client_errors_leaves_other_errors_alone() -> None:
    with pytest.raises(KeyError), E.translate_client_errors("X"):
        raise KeyError("not ours")


def test_dataset_error_names_record_and_field() -> None:
    err = E.DatasetError("empty assistant turn", record_index=7, field="response")
    assert str(err) == "record 7, field 'response': empty assistant turn"
    assert (err.record_index, err.field) == (7, "response")


def test_preflight_error_lists_findings() -> None:
    finding = Finding(rule="weights-safetensors", path="pytorch_model.bin", message="use .safetensors")
    err = E.PreflightError([finding])
    assert err.findings == (finding,)
    assert "weights-safetensors" in str(err) and "pytorch_model.bin" in str(err)
    assert finding.severity is Severity.ERROR


def test_import_job_error_carries_failure_message() -> None:
    err = E.ImportJobError("job failed", job_arn="arn:job", failure_message="unsupported architecture")
    assert err.failure_message == "unsupported architecture"
    assert err.job_arn == "arn:job"


def test_a_missing_extra_names_what_to_install() -> None:
    from bedrock_ft._deps import MissingDependencyError, require

    with pytest.raises(
        MissingDependencyError, match=r"needs no_such_module_xyz; .*pip install 'bedrock-ft\[local\]'"
    ):
        require("json", "no_such_module_xyz", extra="local", feature="the local Bedrock")
    require("json", extra="local", feature="nothing missing")  # no error
    assert issubclass(MissingDependencyError, ImportError)
