"""ImportedModelClient without a server: codecs, format choice, request checks, the retry policy.

Response bodies here come from the local Bedrock's own response builders (the shapes it serves), so a
codec and the server can't drift apart unnoticed. Checks that must happen before anything is sent
use a client aimed at a closed port: had it sent, the error would be EndpointUnreachableError.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from bedrock_ft import ImportedModel
from bedrock_ft.aws import AwsConfig
from bedrock_ft.chat_templates import BUILTIN_TEMPLATES
from bedrock_ft.errors import (
    ArtifactError,
    MalformedResponseError,
    ModelNotReadyError,
    RequestValidationError,
    ThrottledError,
    UnsupportedFormatError,
)
from bedrock_ft.formats import FORMATS, NEW_FORMATS
from bedrock_ft.local._formats import parse_invoke_body, response_body, stream_chunks
from bedrock_ft.local.engine import Delta
from bedrock_ft.runtime import GenerationParams, ImportedModelClient, InvokeConfig
from bedrock_ft.runtime._formats import choose_format, parse_imported_model_arn
from bedrock_ft.runtime._results import RetryEvent
from bedrock_ft.runtime._retry import call_with_retries
from bedrock_ft.runtime.codecs import CODECS, get_codec, parse_json

ARN = "arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghij12"
CLOSED = "http://127.0.0.1:9"  # nothing listens on the discard port


def model(**changes: Any) -> ImportedModel:
    base: dict[str, Any] = {
        "model_arn": ARN,
        "model_name": "m",
        "architecture": "llama",
        "instruct_supported": True,
        "chat_template": BUILTIN_TEMPLATES["chatml"],
        "special_tokens": {"bos_token": "", "eos_token": "<|im_end|>"},
    }
    return ImportedModel(**{**base, **changes})


def offline_client(**changes: Any) -> ImportedModelClient:
    aws = AwsConfig(region="us-east-1", endpoint_urls={"bedrock-runtime": CLOSED, "bedrock": CLOSED})
    return ImportedModelClient(model(**changes), InvokeConfig(aws=aws, max_attempts=1))


# --- codecs ---------------------------------------------------------------------------------------


def test_every_format_of_the_table_has_a_codec_and_back() -> None:
    assert sorted(CODECS) == sorted(FORMATS)
    for name, codec in CODECS.items():
        assert codec.body_format is FORMATS[name]


@pytest.mark.parametrize("name", list(CODECS))
def test_each_codec_builds_a_body_the_service_parses_as_its_format(name: str) -> None:
    codec = get_codec(name)
    params = GenerationParams(max_tokens=7, temperature=0.2, top_p=0.9)
    if codec.takes_messages:
        body = codec.body(params, messages=[{"role": "user", "content": "hi"}])
    else:
        body = codec.body(params, prompt="hi")
    # a model imported as legacy takes its native body; any other takes the three newer formats
    model_format = name if FORMATS[name].legacy else "openai"
    request = parse_invoke_body(json.dumps(body).encode(), model_format, max_tokens_limit=100, stream=False)
    assert request.format.name == name
    assert request.params.max_new_tokens == 7
    assert request.params.temperature == 0.2
    assert request.params.top_p == 0.9


@pytest.mark.parametrize(("name", "key"), [("BedrockCompletion", "max_gen_len"), ("llama", "max_gen_len")])
def test_max_tokens_is_renamed_where_the_format_says_so(name: str, key: str) -> None:
    body = get_codec(name).body(GenerationParams(max_tokens=5), prompt="x")
    assert body[key] == 5 and "max_tokens" not in body


def test_stop_sequences_are_sent_as_a_list() -> None:
    body = get_codec("OpenAICompletion").body(GenerationParams(stop=("\n\n", "Q:")), prompt="x")
    assert body["stop"] == ["\n\n", "Q:"]


@pytest.mark.parametrize(("name", "param"), [("llama", "stop"), ("llama", "top_k"), ("mistral", "seed")])
def test_a_setting_the_format_lacks_is_refused(name: str, param: str) -> None:
    value: Any = ("END",) if param == "stop" else 3
    with pytest.raises(UnsupportedFormatError, match=f"{name} format has no {param}"):
        get_codec(name).body(GenerationParams(**{param: value}), prompt="x")


def _local_request(name: str) -> Any:
    codec = get_codec(name)
    model_format = name if FORMATS[name].legacy else "openai"
    if codec.takes_messages:
        body = codec.body(GenerationParams(), messages=[{"role": "user", "content": "hi"}])
    else:
        body = codec.body(GenerationParams(), prompt="hi")
    return parse_invoke_body(json.dumps(body).encode(), model_format, max_tokens_limit=512, stream=True)


@pytest.mark.parametrize("name", list(CODECS))
def test_each_codec_reads_the_services_response(name: str) -> None:
    last = Delta("", finish_reason="length", prompt_tokens=11, completion_tokens=4)
    body = response_body(_local_request(name), "Paris is", last, ARN)
    decoded = get_codec(name).decode(parse_json(json.dumps(body).encode(), fmt=name))
    assert decoded.text == "Paris is"
    assert decoded.finish_reason == "length"
    if name != "mistral":  # Mistral's body carries no counts (they come in headers)
        assert (decoded.input_tokens, decoded.output_tokens) == (11, 4)


@pytest.mark.parametrize("name", list(CODECS))
def test_each_codec_reads_the_services_stream(name: str) -> None:
    deltas = [
        Delta("Par"),
        Delta("is"),
        Delta("", finish_reason="stop", prompt_tokens=9, completion_tokens=2),
    ]
    chunks = list(stream_chunks(_local_request(name), deltas, ARN, started=0.0))
    decoded = [get_codec(name).decode_chunk(c) for c in chunks]
    assert "".join(d.text for d in decoded) == "Paris"
    assert decoded[-1].finish_reason == "stop"
    assert (decoded[-1].input_tokens, decoded[-1].output_tokens) == (9, 2)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON: '<html>502 Bad Gateway</html>'"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"outputs": []}', "has no generation"),
        (b'{"generation": 42}', "generation should be str, got int"),
    ],
)
def test_a_body_of_the_wrong_shape_is_quoted_in_the_error(body: bytes, needle: str) -> None:
    with pytest.raises(MalformedResponseError, match="BedrockCompletion") as info:
        get_codec("BedrockCompletion").decode(parse_json(body, fmt="BedrockCompletion"))
    assert needle in str(info.value)


def test_a_long_bad_body_is_quoted_by_its_start_only() -> None:
    body = json.dumps({"unexpected": "x" * 5000}).encode()
    with pytest.raises(MalformedResponseError) as info:
        get_codec("OpenAIChatCompletion").decode(parse_json(body, fmt="OpenAIChatCompletion"))
    message = str(info.value)
    assert "choices[0].message.content" in message and '{"unexpected": "xxx' in message
    assert len(message) < 400 and message.endswith("...")


# --- ARNs and formats -----------------------------------------------------------------------------


def test_imported_model_arn_is_parsed() -> None:
    assert parse_imported_model_arn(ARN) == ("us-east-1", "abcdefghij12")


@pytest.mark.parametrize(
    ("arn", "needle"),
    [
        ("arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-8b-instruct-v1:0", "not a Bedrock ARN"),
        ("arn:aws:bedrock:us-east-1:123456789012:custom-model/abcdefghij12", "is a custom-model ARN"),
        ("arn:aws:s3:::bucket/key", "not a Bedrock ARN"),
        ("my-model", "is not an ARN"),
        ("", "expected arn:aws:bedrock:REGION:ACCOUNT:imported-model/ID"),
        ("arn:aws:bedrock:us-east-1:123456789012:imported-model/../../x", "not a Bedrock ARN"),
        ("arn:aws:bedrock:us-east-1:123456789012:imported-model/ABC", "malformed model id"),
    ],
)
def test_an_arn_that_is_not_an_imported_model_is_refused(arn: str, needle: str) -> None:
    with pytest.raises(RequestValidationError, match="model ARN") as info:
        ImportedModelClient.from_arn(arn, describe=False)
    assert needle in str(info.value)


def test_a_model_still_importing_cannot_be_invoked() -> None:
    pending = ImportedModel(model_name="m", status="InProgress", job_name="job-1")
    with pytest.raises(ArtifactError, match=r"no model ARN yet .*job-1 is InProgress"):
        ImportedModelClient(pending)


def test_the_arn_region_wins_over_none_and_a_mismatch_is_refused() -> None:
    client = ImportedModelClient(model(), InvokeConfig())
    assert client._aws.region == "us-east-1"
    with pytest.raises(
        RequestValidationError, match=r"is in us-east-1, but InvokeConfig\.aws\.region is eu-west-1"
    ):
        ImportedModelClient(model(), InvokeConfig(aws=AwsConfig(region="eu-west-1")))


def test_default_formats_follow_the_import_date_and_the_chat_template() -> None:
    new = model(architecture=None)
    assert new.accepted_formats() == (*NEW_FORMATS, "Converse")
    assert choose_format(new, "auto", "complete") == "BedrockCompletion"
    assert choose_format(new, "auto", "chat") == "OpenAIChatCompletion"
    no_template = model(architecture=None, instruct_supported=False)
    assert choose_format(no_template, "auto", "chat") == "BedrockCompletion"

    old = model(architecture="mistral", creation_time=datetime(2025, 6, 1, tzinfo=timezone.utc))
    assert old.legacy and old.accepted_formats() == ("mistral", "Converse")
    assert choose_format(old, "auto", "complete") == "mistral"
    assert choose_format(old, "auto", "chat") == "mistral"
    with pytest.raises(UnsupportedFormatError, match="imported before 2025-11-11"):
        choose_format(old, "OpenAICompletion", "complete")
    with pytest.raises(UnsupportedFormatError, match="the llama body is for llama models; this is a mistral"):
        choose_format(old, "llama", "complete")
    # An explicit native body of the model's own family is the caller's call (the list is inferred).
    assert choose_format(model(), "llama", "chat") == "llama"
    with pytest.raises(UnsupportedFormatError, match=r"unknown api_format 'gpt' \(known: auto, "):
        choose_format(model(), "gpt", "chat")


def test_gpt_oss_completes_in_the_openai_format_and_refuses_bedrock_completion() -> None:
    gpt = model(architecture="gpt_oss")
    assert gpt.accepted_formats() == ("OpenAICompletion", "OpenAIChatCompletion")
    assert choose_format(gpt, "auto", "complete") == "OpenAICompletion"
    assert choose_format(gpt, "auto", "chat") == "OpenAIChatCompletion"
    with pytest.raises(UnsupportedFormatError, match="gpt_oss models take only OpenAICompletion, OpenAIChat"):
        choose_format(gpt, "BedrockCompletion", "complete")


def test_converse_on_qwen2_is_refused_before_sending() -> None:
    client = offline_client(architecture="qwen2")
    assert "Converse" not in client.formats
    with pytest.raises(UnsupportedFormatError, match="does not offer the Converse API for qwen2 models"):
        client.converse([{"role": "user", "content": "hi"}])


def test_chat_completion_on_a_model_without_template_is_refused_before_sending() -> None:
    client = offline_client(instruct_supported=False)
    with pytest.raises(UnsupportedFormatError, match="Bedrock found no chat template in it"):
        client.chat([{"role": "user", "content": "hi"}], api_format="OpenAIChatCompletion")
    with pytest.raises(UnsupportedFormatError, match="takes messages, not a prompt: call chat"):
        offline_client().complete("hi", api_format="OpenAIChatCompletion")
    with pytest.raises(UnsupportedFormatError, match="unknown api_format 'gpt'"):
        offline_client().complete("hi", api_format="gpt")


def test_chat_as_a_prompt_needs_the_training_template() -> None:
    client = offline_client(instruct_supported=False, chat_template=None)
    with pytest.raises(UnsupportedFormatError, match="no chat template is known"):
        client.chat([{"role": "user", "content": "hi"}])


def test_render_chat_uses_the_carried_template_and_drops_a_bos_the_tokenizer_adds() -> None:
    tokens = {"bos_token": "<s>", "eos_token": "</s>"}
    client = offline_client(chat_template=BUILTIN_TEMPLATES["human_assistant"], special_tokens=tokens)
    prompt = client.render_chat([{"role": "user", "content": "2+2?"}])
    assert prompt == "\n\nHuman: 2+2?</s>\n\nAssistant: "
    mistral = offline_client(chat_template=BUILTIN_TEMPLATES["mistral"], special_tokens=tokens)
    assert mistral.render_chat([{"role": "user", "content": "hi"}]) == "<s>[INST] hi [/INST]"
    adds_bos = offline_client(
        chat_template=BUILTIN_TEMPLATES["mistral"], special_tokens=tokens, adds_bos_token=True
    )
    assert adds_bos.render_chat([{"role": "user", "content": "hi"}]) == "[INST] hi [/INST]"


# --- bad requests, refused before sending ---------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"temperature": 2.5}, "temperature: Input should be less than or equal to 2"),
        ({"top_p": 0}, "top_p: Input should be greater than 0"),
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({"stop": [""]}, "stop sequences must not be empty"),
        ({"stop": [f"s{i}" for i in range(17)]}, "at most 16 stop sequences"),
        ({"temprature": 0.5}, "temprature: unknown key"),
    ],
)
def test_parameters_out_of_range_name_the_parameter(params: dict[str, Any], needle: str) -> None:
    with pytest.raises(RequestValidationError, match="complete\\(\\): invalid parameter") as info:
        offline_client().complete("hi", **params)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("call", "payload", "needle"),
    [
        ("complete", "", "the prompt is empty"),
        ("complete", "   ", "the prompt is empty"),
        ("complete", None, "the prompt must be a string"),
        ("chat", [], "messages is empty"),
        ("chat", "hi", "messages must be a list"),
        (
            "chat",
            [{"role": "bot", "content": "hi"}],
            "messages[0].role must be one of system, user, assistant",
        ),
        ("chat", [{"role": "user"}], "messages[0].content must be a string"),
        ("chat", [{"role": "system", "content": "be brief"}], "only system messages"),
    ],
)
def test_empty_or_malformed_input_is_refused(call: str, payload: Any, needle: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        getattr(offline_client(), call)(payload)
    assert needle in str(info.value)


def test_a_role_sequence_the_template_rejects_is_refused_with_its_reason() -> None:
    client = offline_client(chat_template=BUILTIN_TEMPLATES["mistral"], special_tokens={"bos_token": "<s>"})
    twice = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    for call in (client.chat, client.converse, client.render_chat):
        with pytest.raises(
            RequestValidationError, match="chat template refused the messages: Conversation roles"
        ):
            call(twice)


def test_batch_parameters_are_checked_before_any_item_runs() -> None:
    with pytest.raises(RequestValidationError, match="batch_complete\\(\\): invalid parameter"):
        offline_client().batch_complete(["a", "b"], temperature=-1)


def test_a_refused_request_reaches_no_endpoint_but_a_good_one_does(aws_credentials: None) -> None:
    from bedrock_ft.errors import EndpointUnreachableError

    with pytest.raises(EndpointUnreachableError):  # proves the checks above ran before sending
        offline_client().complete("hi")


# --- retries ----------------------------------------------------------------------------------------


class Flaky:
    """Fails with the given errors in turn, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


FAST = InvokeConfig(initial_backoff=0.001, max_backoff=0.002, max_attempts=4, cold_start_timeout=5)


def test_cold_starts_and_throttling_are_retried_and_reported() -> None:
    events: list[RetryEvent] = []
    fn = Flaky(ModelNotReadyError("not ready"), ModelNotReadyError("not ready"), ThrottledError("slow down"))
    result, attempts = call_with_retries(fn, FAST, operation="InvokeModel", on_retry=events.append)
    assert (result, attempts, fn.calls) == ("ok", 4, 4)
    assert [e.kind for e in events] == ["cold_start", "cold_start", "throttled"]
    assert [e.attempt for e in events] == [1, 2, 3]
    assert all(0 < e.wait_s <= 0.002 for e in events)
    assert "model not ready (cold start" in events[0].describe()


def test_validation_errors_are_never_retried() -> None:
    fn = Flaky(RequestValidationError("bad"))
    with pytest.raises(RequestValidationError):
        call_with_retries(fn, FAST, operation="InvokeModel")
    assert fn.calls == 1


def test_throttling_gives_up_after_max_attempts() -> None:
    fn = Flaky(*[ThrottledError("slow down") for _ in range(10)])
    with pytest.raises(ThrottledError, match="gave up after 4 attempts") as info:
        call_with_retries(fn, FAST, operation="InvokeModel")
    assert fn.calls == 4 and info.value.attempts == 4  # type: ignore[attr-defined]


def test_cold_start_gives_up_after_its_time_budget_not_a_count() -> None:
    config = FAST.replace(cold_start_timeout=0.05, max_attempts=1)
    fn = Flaky(*[ModelNotReadyError("not ready") for _ in range(10_000)])
    with pytest.raises(ModelNotReadyError, match=r"still not ready after \d+ s and \d+ attempt") as info:
        call_with_retries(fn, config, operation="InvokeModel")
    assert fn.calls > 1  # retried past max_attempts=1: the cold start has its own budget
    assert "cold_start_timeout" in str(info.value)


# --- what the importer records for rendering ---------------------------------------------------------


def _reader(files: dict[str, Any]) -> Any:
    def read(name: str) -> bytes | None:
        value = files.get(name)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else json.dumps(value).encode()

    return read


def _processor(first: str) -> dict[str, Any]:
    return {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": first, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    }


@pytest.mark.parametrize(
    ("files", "adds"),
    [
        ({"tokenizer_config.json": {"bos_token": "<s>", "add_bos_token": True}}, True),
        ({"tokenizer_config.json": {"bos_token": "<s>", "add_bos_token": False}}, False),
        # Llama 3: no add_bos_token; the fast tokenizer's post-processor puts the BOS in front.
        (
            {
                "tokenizer_config.json": {"bos_token": "<|begin_of_text|>"},
                "tokenizer.json": {"post_processor": _processor("<|begin_of_text|>")},
            },
            True,
        ),
        (
            {
                "tokenizer_config.json": {"bos_token": {"content": "<s>"}},
                "tokenizer.json": {"post_processor": {"type": "Sequence", "processors": [_processor("<s>")]}},
            },
            True,
        ),
        (
            {
                "tokenizer_config.json": {"bos_token": "<|im_start|>"},
                "tokenizer.json": {"post_processor": None},
            },
            False,
        ),
        ({"tokenizer_config.json": {"bos_token": "<s>"}}, None),  # no tokenizer.json: unknown
    ],
)
def test_the_importer_records_whether_the_tokenizer_adds_a_bos(
    files: dict[str, Any], adds: bool | None
) -> None:
    from bedrock_ft.importing._chat_facts import chat_facts

    facts = chat_facts(_reader(files))
    assert facts["adds_bos_token"] is adds
    assert facts["special_tokens"]["bos_token"] in ("<s>", "<|begin_of_text|>", "<|im_start|>")


def test_tokenizer_config_holds_the_template_bedrock_reads() -> None:
    from bedrock_ft.importing._chat_facts import chat_facts

    files = {
        "tokenizer_config.json": {"chat_template": "embedded", "eos_token": "</s>"},
        "chat_template.jinja": "separate",
    }
    facts = chat_facts(_reader(files))
    assert facts["chat_template"] == "embedded" and facts["special_tokens"] == {"eos_token": "</s>"}
    # Only a separate file: still the training template, for rendering prompts client-side.
    files["tokenizer_config.json"] = {"eos_token": "</s>"}
    assert chat_facts(_reader(files))["chat_template"] == "separate"


def test_throttles_after_a_long_cold_start_still_get_their_attempts() -> None:
    events: list[RetryEvent] = []
    fn = Flaky(
        *[ModelNotReadyError("not ready") for _ in range(10)], ThrottledError("a"), ThrottledError("b")
    )
    result, attempts = call_with_retries(fn, FAST, operation="InvokeModel", on_retry=events.append)
    assert result == "ok" and attempts == 13  # 10 cold starts did not use up max_attempts=4
    assert [e.kind for e in events].count("throttled") == 2


def test_an_error_that_ends_a_retried_call_carries_its_attempts() -> None:
    fn = Flaky(ThrottledError("slow down"), ThrottledError("slow down"), RequestValidationError("bad"))
    with pytest.raises(RequestValidationError) as info:
        call_with_retries(fn, FAST, operation="InvokeModel")
    assert info.value.attempts == 3  # type: ignore[attr-defined]


def test_batch_concurrency_and_format_are_checked_before_any_item_runs() -> None:
    client = offline_client(architecture="qwen2")
    with pytest.raises(RequestValidationError, match="max_concurrency must be at least 1, got 0"):
        client.batch_complete(["a"], max_concurrency=0)
    with pytest.raises(UnsupportedFormatError, match="the mistral body is for mistral models"):
        client.batch_complete(["a"], api_format="mistral")
    with pytest.raises(UnsupportedFormatError, match="Bedrock found no chat template"):
        offline_client(instruct_supported=False).batch_chat([[]], api_format="OpenAIChatCompletion")


def test_converse_stream_events_are_read_and_odd_ones_refused() -> None:
    from bedrock_ft.runtime._converse import decode_converse_event

    text, _ = decode_converse_event({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Par"}}})
    stop, _ = decode_converse_event({"messageStop": {"stopReason": "max_tokens"}})
    meta, _ = decode_converse_event({"metadata": {"usage": {"inputTokens": 5, "outputTokens": 2}}})
    assert (text.text, stop.finish_reason, meta.input_tokens, meta.output_tokens) == ("Par", "length", 5, 2)
    assert decode_converse_event({"messageStart": {"role": "assistant"}})[0].text == ""
    with pytest.raises(MalformedResponseError, match="unexpected stream event 'toolUse'"):
        decode_converse_event({"toolUse": {}})
    with pytest.raises(MalformedResponseError, match=r"has no messageStop\.stopReason"):
        decode_converse_event({"messageStop": {}})


def _serve_once_dropped(answer: dict[str, Any]) -> tuple[str, list[bytes]]:
    """A loopback HTTP server: it drops the first connection without answering (as a server closing a
    pooled keep-alive connection does), then answers the next request with ``answer``."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        while len(rest) < length:
            rest += conn.recv(65536)
        return head + b"\r\n\r\n" + rest

    def serve() -> None:
        for i in range(2):
            conn, _ = server.accept()
            with conn:
                requests.append(read_request(conn))
                if i == 0:
                    continue  # closed with no response
                body = json.dumps(answer).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}", requests


def test_a_connection_dropped_before_the_response_is_retried(aws_credentials: None) -> None:
    from bedrock_ft.errors import ConnectionDroppedError

    answer = {
        "generation": "Paris",
        "prompt_token_count": 3,
        "generation_token_count": 1,
        "stop_reason": "stop",
    }
    url, requests = _serve_once_dropped(answer)
    events: list[Any] = []
    aws = AwsConfig(region="us-east-1", endpoint_urls={"bedrock-runtime": url})
    client = ImportedModelClient(model(), InvokeConfig(aws=aws, initial_backoff=0.01), on_retry=events.append)
    done = client.complete("Capital of France?", max_tokens=4)
    assert done.text == "Paris" and done.attempts == 2
    assert [e.kind for e in events] == ["dropped"] and isinstance(events[0].error, ConnectionDroppedError)
    assert len(requests) == 2 and requests[0].split(b"\r\n\r\n")[1] == requests[1].split(b"\r\n\r\n")[1]
