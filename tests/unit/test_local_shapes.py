"""Routes, request parsing and validation of the local Bedrock, checked against botocore itself."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.model import ShapeResolver

from bedrock_ft import _patterns as P
from bedrock_ft.local import _shapes as S

ARN = "arn:aws:bedrock:us-east-1:123456789012:imported-model/abc123def456"
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-import-job/abc123def456"
ROLE = "arn:aws:iam::123456789012:role/BedrockImport"
JOB_NAME_PATTERN = r"[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*"
CONTROL = [
    "CreateModelImportJob", "GetModelImportJob", "ListModelImportJobs",
    "GetImportedModel", "ListImportedModels", "DeleteImportedModel",
]  # fmt: skip
RUNTIME = ["InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream"]


class _Body:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b"{}"

    def close(self) -> None:
        pass


def _sent(service: str, method: str, **kwargs: Any) -> Any:
    """The request botocore would put on the wire, caught before it leaves (no network)."""
    client = botocore.session.get_session().create_client(
        service, region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    sent = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {"content-type": "application/json"}, _Body())

    client.meta.events.register("before-send", capture)
    getattr(client, method)(**kwargs)
    return sent[0]


def _route(service: str, method: str, raw_path: str) -> tuple[str, dict[str, str]] | None:
    """Starlette's routing: on the percent-decoded ASGI path, `{name:path}` being `(?P<name>.*)`."""
    for operation, route_method, path in S.routes(service):
        found = re.fullmatch(re.sub(r"\{(\w+):path\}", r"(?P<\1>.*)", path), unquote(raw_path))
        if found and route_method == method:
            return operation, found.groupdict()
    return None


def _serve(service: str, request: Any) -> tuple[str, dict[str, Any]]:
    """What the server does with it: route, then parse."""
    url = urlsplit(request.url)
    matched = _route(service, request.method, url.path)
    assert matched is not None, url.path
    operation, labels = matched
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    body = request.body.encode() if isinstance(request.body, str) else request.body
    return operation, S.parse_request(service, operation, labels, parse_qsl(url.query), body, headers)


def _shape(definition: dict[str, Any]) -> Any:
    return ShapeResolver({"S": definition, "Str": {"type": "string", "max": 3}}).get_shape_by_name("S")


def _model_patterns() -> list[str]:
    found = set()
    for service in ("bedrock", "bedrock-runtime"):
        model = S.service_model(service)
        found |= {model.shape_for(name).metadata.get("pattern") for name in model.shape_names}
    return sorted(found - {None})


# --- routes and the ARN label --------------------------------------------------------------------------


def test_routes_come_from_the_model_in_starlette_syntax() -> None:
    control = {r.operation: (r.method, r.path) for r in S.routes("bedrock", CONTROL)}
    assert control == {
        "CreateModelImportJob": ("POST", "/model-import-jobs"),
        "GetModelImportJob": ("GET", "/model-import-jobs/{jobIdentifier:path}"),
        "ListModelImportJobs": ("GET", "/model-import-jobs"),
        "GetImportedModel": ("GET", "/imported-models/{modelIdentifier:path}"),
        "ListImportedModels": ("GET", "/imported-models"),
        "DeleteImportedModel": ("DELETE", "/imported-models/{modelIdentifier:path}"),
    }
    runtime = {r.operation: r.path for r in S.routes("bedrock-runtime", RUNTIME)}
    assert runtime["InvokeModel"] == "/model/{modelId:path}/invoke"
    assert runtime["InvokeModelWithResponseStream"] == "/model/{modelId:path}/invoke-with-response-stream"
    operation, method, path = S.routes("bedrock-runtime", ["Converse"])[0]  # unpacks as a triple
    assert (operation, method, path) == ("Converse", "POST", "/model/{modelId:path}/converse")
    # More literal text first, so "/x/{id:path}/stop" is tried before "/x/{id:path}".
    every = [r.path for r in S.routes("bedrock")]
    assert every.index("/model-customization-jobs/{jobIdentifier:path}/stop") < every.index(
        "/model-customization-jobs/{jobIdentifier:path}"
    )


def test_operation_http_gives_status_codes_and_error_shapes() -> None:
    create = S.operation_http("bedrock", "CreateModelImportJob")
    assert (create.method, create.uri_template, create.status_code) == ("POST", "/model-import-jobs", 201)
    assert create.errors["ValidationException"] == 400 and create.errors["ThrottlingException"] == 429
    invoke = S.operation_http("bedrock-runtime", "InvokeModel")
    assert invoke.uri_template == "/model/{modelId}/invoke"
    assert invoke.errors["ModelNotReadyException"] == 429 and invoke.errors["ModelErrorException"] == 424


@pytest.mark.parametrize("operation", ["invoke_model", "invoke_model_with_response_stream"])
def test_an_arn_model_id_survives_botocore_encoding(operation: str) -> None:
    request = _sent("bedrock-runtime", operation, modelId=ARN, body=b"{}")
    raw_path = urlsplit(request.url).path
    # botocore percent-encodes ':' and '/' inside a non-greedy label.
    assert raw_path.startswith("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aimported-model%2Fabc")
    expected = {"invoke_model": "InvokeModel"}.get(operation, "InvokeModelWithResponseStream")
    assert _route("bedrock-runtime", "POST", raw_path) == (expected, {"modelId": ARN})


def test_label_routes_need_the_path_convertor() -> None:
    # With Starlette's default `{name}` ([^/]+), the decoded ARN's '/' would 404.
    decoded = "/model-import-jobs/" + JOB_ARN
    assert re.fullmatch(r"/model-import-jobs/(?P<jobIdentifier>[^/]+)", decoded) is None
    assert _route("bedrock", "GET", decoded) == ("GetModelImportJob", {"jobIdentifier": JOB_ARN})
    assert _route("bedrock", "GET", "/model-import-jobs") == ("ListModelImportJobs", {})
    assert _route("bedrock", "POST", "/model-import-jobs") == ("CreateModelImportJob", {})


# --- parse_request: botocore's own requests round-trip --------------------------------------------------

REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("bedrock", "create_model_import_job", {
        "jobName": "llama-ft.v1", "importedModelName": "llama_ft-1", "roleArn": ROLE,
        "modelDataSource": {"s3DataSource": {"s3Uri": "s3://my-bucket/models/llama/"}},
        "jobTags": [{"key": "team", "value": "ml"}], "clientRequestToken": "tok-1",
    }),
    ("bedrock", "get_model_import_job", {"jobIdentifier": JOB_ARN}),
    ("bedrock", "list_model_import_jobs", {
        "creationTimeAfter": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "maxResults": 5,
        "statusEquals": "Failed", "sortOrder": "Descending", "nameContains": "llama",
    }),
    ("bedrock", "get_imported_model", {"modelIdentifier": ARN}),
    ("bedrock", "list_imported_models", {"maxResults": 1000, "sortBy": "CreationTime"}),
    ("bedrock", "delete_imported_model", {"modelIdentifier": "llama_ft-1"}),
    ("bedrock-runtime", "invoke_model", {
        "modelId": ARN, "body": b'{"prompt": "hi"}', "contentType": "application/json",
        "accept": "application/json", "trace": "ENABLED",
    }),
    ("bedrock-runtime", "invoke_model_with_response_stream", {
        "modelId": ARN, "body": b"\x00raw", "accept": "*/*",
    }),
    ("bedrock-runtime", "converse", {
        "modelId": ARN,
        "messages": [{"role": "user", "content": [
            {"text": "hi"}, {"image": {"format": "png", "source": {"bytes": b"\x89PNG\r\n"}}},
        ]}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.5, "stopSequences": ["\n\n"]},
        "requestMetadata": {"team": "ml"}, "additionalModelRequestFields": {"top_k": 5, "x": [None]},
    }),
    ("bedrock-runtime", "converse_stream", {
        "modelId": ARN, "system": [{"text": "be brief"}],
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
    }),
]  # fmt: skip


@pytest.mark.parametrize(("service", "method", "kwargs"), REQUESTS, ids=[r[1] for r in REQUESTS])
def test_botocore_requests_parse_back_to_their_input_and_validate(
    service: str, method: str, kwargs: dict[str, Any]
) -> None:
    operation, params = _serve(service, _sent(service, method, **kwargs))
    assert params == kwargs  # blobs back to bytes, timestamps to datetime, ints from the query string
    assert S.input_errors(service, operation, params) == []
    S.validate_input(service, operation, params)  # does not raise


def test_a_blob_payload_is_the_raw_body_and_headers_match_case_insensitively() -> None:
    params = S.parse_request(
        "bedrock-runtime", "InvokeModel", {"modelId": "m"}, {}, b"not json", {"CONTENT-TYPE": "text/plain"}
    )
    assert params == {"modelId": "m", "body": b"not json", "contentType": "text/plain"}


def test_malformed_bodies_are_serialization_errors() -> None:
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(S.RequestSerializationError) as caught:
            S.parse_request("bedrock", "CreateModelImportJob", {}, {}, body, {})
        assert caught.value.code == "SerializationException"
        assert not str(caught.value).startswith("1 validation error")


def test_a_uri_member_sent_in_the_body_is_refused() -> None:
    with pytest.raises(S.ShapeValidationError) as caught:
        S.parse_request("bedrock-runtime", "Converse", {"modelId": "m"}, {}, b'{"modelId": "other"}', {})
    assert caught.value.messages == [
        "Value at 'modelId' failed to satisfy constraint: Member must not be in the body"
    ]


def test_query_values_that_do_not_convert_are_reported_as_type_errors() -> None:
    params = S.parse_request("bedrock", "ListImportedModels", {}, {"maxResults": "ten"}, None, {})
    assert params == {"maxResults": "ten"}
    assert S.input_errors("bedrock", "ListImportedModels", params) == [
        "Value 'ten' at 'maxResults' failed to satisfy constraint: Member must be of type integer"
    ]


# --- validation: every constraint kind and the exact wording ----------------------------------------


def _create(**overrides: Any) -> dict[str, Any]:
    params = {
        "jobName": "job-1", "importedModelName": "model-1", "roleArn": ROLE,
        "modelDataSource": {"s3DataSource": {"s3Uri": "s3://bucket/model/"}},
    }  # fmt: skip
    return {k: v for k, v in {**params, **overrides}.items() if v is not None}


def test_a_pattern_error_is_worded_like_the_service() -> None:
    with pytest.raises(S.ShapeValidationError) as caught:
        S.validate_input("bedrock", "CreateModelImportJob", _create(jobName="bad name!"))
    assert caught.value.code == "ValidationException"
    assert str(caught.value) == (
        "1 validation error detected: Value 'bad name!' at 'jobName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9\\+\\-\\.])*"
    )


def test_several_errors_are_counted_and_joined() -> None:
    with pytest.raises(S.ShapeValidationError) as caught:
        S.validate_input("bedrock", "CreateModelImportJob", _create(jobName="", roleArn=None))
    assert caught.value.messages == [
        "Value null at 'roleArn' failed to satisfy constraint: Member must not be null",
        "Value '' at 'jobName' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1",
        "Value '' at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern: "
        + JOB_NAME_PATTERN,
    ]
    assert str(caught.value).startswith("3 validation errors detected: Value null at 'roleArn'")
    assert "; Value '' at 'jobName'" in str(caught.value)


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        ("CreateModelImportJob", _create(importedModelName="m" * 64),
         f"Value '{'m' * 64}' at 'importedModelName' failed to satisfy constraint: "
         "Member must have length less than or equal to 63"),
        ("ListModelImportJobs", {"maxResults": 0},
         "Value '0' at 'maxResults' failed to satisfy constraint: "
         "Member must have value greater than or equal to 1"),
        ("ListModelImportJobs", {"maxResults": 1001},
         "Value '1001' at 'maxResults' failed to satisfy constraint: "
         "Member must have value less than or equal to 1000"),
        ("ListModelImportJobs", {"statusEquals": "Done"},
         "Value 'Done' at 'statusEquals' failed to satisfy constraint: "
         "Member must satisfy enum value set: [InProgress, Completed, Failed]"),
        ("ListModelImportJobs", {"maxResults": 2**31},
         f"Value '{2**31}' at 'maxResults' failed to satisfy constraint: Member must be of type integer"),
        ("ListModelImportJobs", {"maxResults": True},
         "Value 'true' at 'maxResults' failed to satisfy constraint: Member must be of type integer"),
        ("CreateModelImportJob", _create(jobName=5),
         "Value '5' at 'jobName' failed to satisfy constraint: Member must be of type string"),
        ("CreateModelImportJob", _create(bogus=1),
         "Value at 'bogus' failed to satisfy constraint: "
         "Member is not defined in CreateModelImportJobRequest"),
        ("CreateModelImportJob",
         _create(modelDataSource={"s3DataSource": {"s3Uri": "s3://bucket/m/", "x": 1}}),
         "Value at 'modelDataSource.s3DataSource.x' failed to satisfy constraint: "
         "Member is not defined in S3DataSource"),
        ("CreateModelImportJob", _create(modelDataSource={}),
         "Value '{}' at 'modelDataSource' failed to satisfy constraint: "
         "Member must have exactly one member set"),
        ("CreateModelImportJob", _create(jobTags=[{"key": "k"}]),
         "Value null at 'jobTags.1.member.value' failed to satisfy constraint: Member must not be null"),
        ("CreateModelImportJob", _create(jobTags=[{"key": "k", "value": "v"}] * 201),
         "Value '" + ", ".join(["{key=k, value=v}"] * 201).join("[]") + "' at 'jobTags' failed to satisfy "
         "constraint: Member must have length less than or equal to 200"),
        ("GetImportedModel", {"modelIdentifier": "arn:aws:bedrock:us-east-1:1:imported-model/x"},
         "Value 'arn:aws:bedrock:us-east-1:1:imported-model/x' at 'modelIdentifier' failed to satisfy "
         "constraint: Member must satisfy regular expression pattern: "
         "(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:imported-model/[a-z0-9]{12})|(([0-9a-zA-Z][_-]?)+)"),
    ],
)  # fmt: skip
def test_each_constraint_kind(operation: str, params: dict[str, Any], expected: str) -> None:
    assert S.input_errors("bedrock", operation, params) == [expected]


def test_sensitive_and_blob_values_are_not_echoed() -> None:
    errors = S.input_errors(
        "bedrock-runtime", "InvokeModel", {"modelId": "m", "requestMetadata": "x" * 8501, "trace": "LOUD"}
    )
    assert errors == [
        "Value at 'requestMetadata' failed to satisfy constraint: "
        "Member must have length less than or equal to 8500",
        "Value 'LOUD' at 'trace' failed to satisfy constraint: "
        "Member must satisfy enum value set: [ENABLED, DISABLED, ENABLED_FULL]",
    ]
    blob = _shape({"type": "blob", "max": 2})
    assert S.validate_value(blob, b"abc", "body") == [
        "Value at 'body' failed to satisfy constraint: Member must have length less than or equal to 2"
    ]


def test_map_keys_and_values_and_other_scalar_types() -> None:
    shape = _shape({"type": "map", "key": {"shape": "Str"}, "value": {"shape": "Str"}, "max": 1})
    assert S.validate_value(shape, {"long": "ok", "k": "long"}, "tags") == [
        "Value '{long=ok, k=long}' at 'tags' failed to satisfy constraint: "
        "Member must have length less than or equal to 1",
        "Value 'long' at 'tags' failed to satisfy constraint: "
        "Member must have length less than or equal to 3",
        "Value 'long' at 'tags.k' failed to satisfy constraint: "
        "Member must have length less than or equal to 3",
    ]
    assert S.validate_value(_shape({"type": "float", "min": 0, "max": 1}), 1.5, "t") == [
        "Value '1.5' at 't' failed to satisfy constraint: Member must have value less than or equal to 1"
    ]
    assert S.validate_value(_shape({"type": "boolean"}), "true", "b") == [
        "Value 'true' at 'b' failed to satisfy constraint: Member must be of type boolean"
    ]
    assert S.validate_value(_shape({"type": "timestamp"}), datetime.now(timezone.utc), "t") == []
    assert S.validate_value(_shape({"type": "timestamp"}), 12, "t") != []
    assert S.validate_value(_shape({"type": "long"}), 2**40, "n") == []


# --- Java patterns -------------------------------------------------------------------------------------


def test_every_model_pattern_runs_on_the_linear_engine() -> None:
    patterns = _model_patterns()
    assert len(patterns) > 100
    kinds = {p: P._compile_pattern(p)[0] for p in patterns}
    assert {k for k in kinds.values()} == {"nfa"}
    # \p{L} is one the model needs translated: Python's re refuses it as written.
    unicode_names = [p for p in patterns if "\\p{" in p]
    assert unicode_names
    with pytest.raises(re.error):
        re.compile(unicode_names[0])


SAMPLES = [
    "", "a", "A1", "a-b", "a--b", "a_b", "-a", "a-", "my-job.v1", "bad name!", "a\n", "x" * 70, ARN,
    JOB_ARN, ROLE, "s3://my-bucket/models/llama/", "s3://b/k", "meta.llama3-8b-v1:0", "us.meta.x-v1:0",
    "DRAFT", "12", "0", "Größe", "e\u0301", "a\rb", "\u0663", "alias/my-key", "https://example.com/x", "v1.0",
    " ", "\t", "abc123def456", "arn:aws:kms:us-east-1:123456789012:key/" + "a" * 36, "ENABLED",
]  # fmt: skip


def test_the_linear_engine_agrees_with_re() -> None:
    rng = random.Random(7)
    alphabet = "aZ09-_.:/ +@=\n\r\u00e9"
    for pattern in _model_patterns():
        matches, python = S.pattern_matcher(pattern), S.translate_java_pattern(pattern)
        assert matches is not None
        randoms = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10))) for _ in range(40)]
        for text in SAMPLES + randoms:
            assert matches(text) == (re.fullmatch(python, text, re.ASCII) is not None), (pattern, text)


def test_a_pathological_name_is_checked_in_linear_time() -> None:
    # In a child process: a backtracking matcher holds the GIL for about 2**60 steps, so no in-process
    # timeout could stop it.
    check = (
        f"from bedrock_ft._shapes import pattern_matcher as p; m = p({JOB_NAME_PATTERN!r}); "
        "assert not m('a' + '-' * 60 + '!') and m('a' + '-' * 60 + 'b')"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=30)


def test_java_semantics_are_kept() -> None:
    letters = S.pattern_matcher(r"\p{L}[\p{L}\p{M}0-9_]*( [\p{L}\p{M}0-9_]+)*")
    assert letters is not None
    assert letters("Größe_1") and letters("Cafe\u0301 au lait") and letters("日本")
    assert not letters("1abc") and not letters(" a") and not letters("a  b")
    not_letters = S.pattern_matcher(r"\P{L}+")
    assert not_letters is not None and not_letters("12 -") and not not_letters("1a")
    digits = S.pattern_matcher(r"\d+")
    assert digits is not None and digits("123") and not digits("\u0663")  # Java's \d is ASCII
    dot = S.pattern_matcher(r"role/.+")
    assert dot is not None and dot("role/x") and not dot("role/a\rb") and not dot("role/a\u2028b")
    assert S.translate_java_pattern(r"a\z") == r"a\Z"


@pytest.mark.parametrize(
    "pattern", ["[a-z&&[^b]]", "[a[bc]]", r"\p{IsLatin}+", r"\p{Alpha}", r"[\P{L}x]", r"a\Z", "a\\v"]
)
def test_untranslatable_patterns_are_skipped_not_guessed(
    pattern: str, caplog: pytest.LogCaptureFixture
) -> None:
    P._compile_pattern.cache_clear()
    with caplog.at_level("WARNING", logger="bedrock_ft.local._shapes"):
        assert S.pattern_matcher(pattern) is None
    assert "has no Python equivalent" in caplog.text
    assert S.validate_value(_shape({"type": "string", "pattern": pattern}), "anything!", "v") == []


def test_constructs_outside_the_engine_fall_back_to_re() -> None:
    kind, matches = P._compile_pattern(r"(a)\1")
    assert kind == "re" and matches is not None and matches("aa") and not matches("ab")
