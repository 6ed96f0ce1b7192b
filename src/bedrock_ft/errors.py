"""The exceptions bedrock-ft raises.

One root, :class:`BedrockFTError`, and a group per stage. Each group also inherits the builtin
that fits (``ConfigError`` is a ``ValueError``), so code that already catches builtins keeps working.

Errors that come back from AWS are translated in one place, :func:`map_client_error`, so callers
never have to read ``e.response["Error"]["Code"]``. The service's own code, message, operation and
request id stay available on :attr:`BedrockFTError.aws`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bedrock_ft._findings import Finding

__all__ = [
    "AccessDeniedError",
    "ArtifactError",
    "AwsError",
    "AwsErrorInfo",
    "BedrockFTError",
    "ConfigError",
    "ConfigProblem",
    "ConflictError",
    "ConnectionDroppedError",
    "DatasetError",
    "EndpointUnreachableError",
    "EvaluationError",
    "ImportJobError",
    "InvocationError",
    "MalformedResponseError",
    "MergeError",
    "ModelError",
    "ModelNotReadyError",
    "ModelTimeoutError",
    "PipelineError",
    "PreflightError",
    "QuotaExceededError",
    "RegistryError",
    "RequestValidationError",
    "ResourceNotFoundError",
    "ServiceUnavailableError",
    "ThrottledError",
    "TrainingError",
    "UnsupportedFormatError",
    "map_client_error",
    "translate_client_errors",
]


@dataclass(frozen=True)
class AwsErrorInfo:
    """What the service said, kept on errors translated from botocore."""

    code: str
    message: str
    operation: str | None = None
    status_code: int | None = None
    request_id: str | None = None


class BedrockFTError(Exception):
    """Root of every error bedrock-ft raises on purpose."""

    aws: AwsErrorInfo | None = None
    """Set when the error was translated from an AWS service response."""


# --- configuration and registries -------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config: where (a dotted field path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(BedrockFTError, ValueError):
    """A config that can't be used. Lists every problem at once, each with its field path."""

    def __init__(self, problems: Sequence[ConfigProblem] | str, *, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [ConfigProblem("", problems)]
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            text = f"invalid config{where}: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            text = f"invalid config{where}: {len(self.problems)} problems\n{lines}"
        super().__init__(text)


class RegistryError(BedrockFTError, ValueError):
    """A registration was refused, or a name is not registered."""


class ArtifactError(BedrockFTError, ValueError):
    """A stage artifact (its ``manifest.json``) is missing, unreadable or of the wrong kind."""


# --- stages -----------------------------------------------------------------------------------


class DatasetError(BedrockFTError, ValueError):
    """Bad input data. ``record_index`` and ``field`` say where, when known."""

    def __init__(self, message: str, *, record_index: int | None = None, field: str | None = None) -> None:
        self.record_index = record_index
        self.field = field
        where = []
        if record_index is not None:
            where.append(f"record {record_index}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class TrainingError(BedrockFTError, RuntimeError):
    """Training can't start or failed."""


class MergeError(BedrockFTError, RuntimeError):
    """Merging the adapter into the base model failed."""


class PreflightError(BedrockFTError, ValueError):
    """A model directory breaks Custom Model Import rules. ``findings`` lists each broken rule."""

    def __init__(self, findings: Sequence[Finding], message: str | None = None) -> None:
        self.findings = tuple(findings)
        if message is None:
            lines = "\n".join(f"  - {f}" for f in self.findings)
            message = f"model directory fails Bedrock Custom Model Import preflight:\n{lines}"
        super().__init__(message)


class ImportJobError(BedrockFTError, RuntimeError):
    """A Custom Model Import job failed. ``failure_message`` is the service's own explanation."""

    def __init__(
        self, message: str, *, job_arn: str | None = None, failure_message: str | None = None
    ) -> None:
        self.job_arn = job_arn
        self.failure_message = failure_message
        super().__init__(message)


class InvocationError(BedrockFTError, RuntimeError):
    """Invoking an imported model failed."""


class ModelNotReadyError(InvocationError):
    """The model is scaled to zero or still loading (a cold start). Retrying later succeeds."""


class ThrottledError(InvocationError):
    """Too many requests. Retrying with backoff succeeds."""


class ModelTimeoutError(InvocationError):
    """The model took too long to answer."""


class ModelError(InvocationError):
    """The model itself failed on the request."""


class UnsupportedFormatError(InvocationError, ValueError):
    """The model does not accept this API format (for example Converse on a Qwen2.5 model).

    Raised before anything is sent."""


class MalformedResponseError(InvocationError):
    """A response body is not the shape its API format promises. The message quotes its start."""


class EvaluationError(BedrockFTError, RuntimeError):
    """Evaluation can't run or failed."""


# --- AWS service errors that belong to no single stage ------------------------------------------


class PipelineError(BedrockFTError, RuntimeError):
    """A pipeline run that can't go on: a stage without its input, an unknown stage, no AWS access."""

    def __init__(self, message: str, *, stage: str | None = None) -> None:
        super().__init__(message)
        self.stage = stage


class AwsError(BedrockFTError):
    """An AWS service error with no more specific meaning here."""


class AccessDeniedError(AwsError, PermissionError):
    """The credentials in use may not do this."""


class ResourceNotFoundError(AwsError, LookupError):
    """The named bucket, key, job or model does not exist."""


class ConflictError(AwsError):
    """The name is taken, or the resource is in a state that forbids the call."""


class QuotaExceededError(AwsError):
    """A service quota is reached (for example 1 concurrent import job, 3 imported models)."""


class RequestValidationError(AwsError, ValueError):
    """The service rejected the request's parameters."""


class ServiceUnavailableError(AwsError):
    """The service failed or is unavailable. Retrying later may succeed."""


class EndpointUnreachableError(AwsError, ConnectionError):
    """No service answered at the endpoint (for a local stack: is it running?)."""


class ConnectionDroppedError(EndpointUnreachableError):
    """The connection closed before a response came: usually a pooled keep-alive connection the server
    had just closed. Transient: a model invocation is retried like throttling."""


# Service error code -> our class. One table, used for every service we call.
_CODE_TO_ERROR: dict[str, type[BedrockFTError]] = {
    "ModelNotReadyException": ModelNotReadyError,
    "ThrottlingException": ThrottledError,
    "Throttling": ThrottledError,
    "TooManyRequestsException": ThrottledError,
    "SlowDown": ThrottledError,
    "ModelTimeoutException": ModelTimeoutError,
    "ModelErrorException": ModelError,
    "ModelStreamErrorException": ModelError,
    "AccessDeniedException": AccessDeniedError,
    "AccessDenied": AccessDeniedError,
    "403": AccessDeniedError,
    "Forbidden": AccessDeniedError,
    "UnrecognizedClientException": AccessDeniedError,
    "InvalidClientTokenId": AccessDeniedError,
    "InvalidAccessKeyId": AccessDeniedError,
    "SignatureDoesNotMatch": AccessDeniedError,
    "ExpiredToken": AccessDeniedError,
    "ExpiredTokenException": AccessDeniedError,
    "ResourceNotFoundException": ResourceNotFoundError,
    "NoSuchBucket": ResourceNotFoundError,
    "NoSuchKey": ResourceNotFoundError,
    "NoSuchEntity": ResourceNotFoundError,
    "404": ResourceNotFoundError,
    "NotFound": ResourceNotFoundError,
    "ConflictException": ConflictError,
    "BucketAlreadyExists": ConflictError,
    "EntityAlreadyExists": ConflictError,
    "ServiceQuotaExceededException": QuotaExceededError,
    "TooManyTagsException": QuotaExceededError,
    "ValidationException": RequestValidationError,
    "ValidationError": RequestValidationError,
    "InvalidBucketName": RequestValidationError,
    "InternalServerException": ServiceUnavailableError,
    "InternalError": ServiceUnavailableError,
    "ServiceUnavailableException": ServiceUnavailableError,
    "ServiceUnavailable": ServiceUnavailableError,
}


def map_client_error(error: BaseException, *, operation: str | None = None) -> BedrockFTError:
    """Translate a botocore error into bedrock-ft's own type. Returns it; does not raise.

    ``ClientError`` is mapped by its service error code. Connection failures become
    :class:`EndpointUnreachableError`. Anything else is wrapped in :class:`AwsError`.
    botocore is duck-typed here so that importing this module stays free of it.
    """
    if isinstance(error, BedrockFTError):
        return error
    response: Any = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        code = str(err.get("Code") or "Unknown")
        message = str(err.get("Message") or "")
        op = operation or getattr(error, "operation_name", None)
        info = AwsErrorInfo(
            code=code,
            message=message,
            operation=op,
            status_code=meta.get("HTTPStatusCode"),
            request_id=meta.get("RequestId"),
        )
        # Inside a response stream botocore reports the event's code in lowerCamel case
        # (throttlingException, modelStreamErrorException, ...): the same errors as their PascalCase codes.
        cls = _CODE_TO_ERROR.get(code) or _CODE_TO_ERROR.get(code[:1].upper() + code[1:], AwsError)
        if cls is AwsError and isinstance(info.status_code, int) and info.status_code >= 500:
            cls = ServiceUnavailableError  # an unlisted server-side failure: transient, as 5xx are
        text = f"{op}: {code}: {message}" if op else f"{code}: {message}"
        mapped = cls(text)
        mapped.aws = info
        return mapped
    kind = type(error).__name__
    if kind == "ConnectionClosedError":
        return ConnectionDroppedError(f"{error}. The connection dropped before the response came")
    if kind in {"EndpointConnectionError", "ConnectTimeoutError"}:
        return EndpointUnreachableError(
            f"{error}. Check the endpoint: AWS_ENDPOINT_URL_<SERVICE> or AwsConfig.endpoint_urls"
        )
    if kind == "ReadTimeoutError":
        return ServiceUnavailableError(
            f"{error}. No answer in time; raise AwsConfig.read_timeout if this is slow work"
        )
    if kind in {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return AccessDeniedError(f"{error}. Configure AWS credentials or a profile (AwsConfig.profile).")
    if kind == "ParamValidationError":
        return RequestValidationError(str(error))
    if kind == "NoRegionError":
        return ConfigError(
            [ConfigProblem("aws.region", "no AWS region: set AwsConfig.region, AWS_REGION or a profile")]
        )
    if kind == "ProfileNotFound":
        return ConfigError([ConfigProblem("aws.profile", str(error))])
    return AwsError(f"{kind}: {error}")


@contextmanager
def translate_client_errors(operation: str | None = None) -> Iterator[None]:
    """Run a block of boto3 calls, re-raising botocore errors as bedrock-ft errors."""
    try:
        yield
    except BedrockFTError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith(("botocore", "boto3", "urllib3")):
            raise map_client_error(exc, operation=operation) from exc
        raise
