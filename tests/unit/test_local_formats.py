"""Invoke bodies of the local Bedrock: which format a body is, and what is refused (no torch here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bedrock_ft.local._errors import ServiceError
from bedrock_ft.local._formats import InvokeRequest, parse_invoke_body, response_body, stream_chunks
from bedrock_ft.local._jobs import ImportFailed, parse_s3_uri, safe_relative_key
from bedrock_ft.local._store import Store
from bedrock_ft.local.engine import Delta


def parse(body: object, invoke_format: str = "openai", **kwargs: object) -> InvokeRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_invoke_body(raw, invoke_format, max_tokens_limit=4096, stream=bool(kwargs.get("stream")))


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"prompt": "hi"}, "BedrockCompletion"),
        ({"prompt": "hi", "max_gen_len": 5}, "BedrockCompletion"),
        ({"prompt": "hi", "max_tokens": 5}, "OpenAICompletion"),
        ({"prompt": "hi", "n": 1}, "OpenAICompletion"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "OpenAIChatCompletion"),
    ],
)
def test_the_format_is_told_by_the_keys(body: dict[str, object], kind: str) -> None:
    assert parse(body).format.name == kind


def test_defaults_and_chat_special_tokens() -> None:
    bedrock = parse({"prompt": "hi"})
    assert (bedrock.params.max_new_tokens, bedrock.params.temperature, bedrock.params.top_p) == (
        512,
        0.5,
        0.9,
    )  # type: ignore[attr-defined]
    assert bedrock.params.add_special_tokens  # type: ignore[attr-defined]
    chat = parse(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ]
        }
    )
    assert chat.messages == ({"role": "user", "content": "ab"},)  # type: ignore[attr-defined]
    assert not chat.params.add_special_tokens  # type: ignore[attr-defined]
    assert parse({"prompt": "x", "stop": "END"}).params.stop == ("END",)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ({"prompt": "hi", "max_tokens": 0}, "'max_tokens' must be between 1 and 4096"),
        ({"prompt": "hi", "max_tokens": 5000}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": True}, "integer"),
        ({"prompt": "hi", "temperature": -1}, "'temperature' must be in [0, 2]"),
        ({"prompt": "hi", "top_p": 1.5}, "top_p"),
        ({"prompt": "hi", "n": 2}, "'n'"),
        ({"prompt": "hi", "logprobs": 9}, "logprobs"),  # OpenAI completions: 0-5
        ({"prompt": "", "max_gen_len": 4}, "non-empty"),
        ({"prompt": "hi", "messages": []}, "not both"),
        ({"prompt": "hi", "stop": [1]}, "'stop'"),
        ({"prompt": "hi", "stream": True}, "InvokeModelWithResponseStream"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": "hi"}, "non-empty list"),
        ({"prompt": "hi", "max_gen_len": 4, "max_tokens": 4}, "unknown parameter(s) max_tokens"),
    ],
)
def test_bad_bodies_name_the_parameter(body: object, needle: str) -> None:
    with pytest.raises(ServiceError) as caught:
        parse(body)
    assert caught.value.code == "ValidationException"
    assert needle in caught.value.message
    assert caught.value.status == 400


def test_legacy_models_take_only_their_native_body() -> None:
    assert (
        parse({"prompt": "[INST] hi [/INST]", "max_tokens": 5, "top_k": 5}, "mistral").format.name
        == "mistral"
    )
    with pytest.raises(ServiceError, match="native format"):
        parse({"messages": [{"role": "user", "content": "hi"}]}, "mistral")
    with pytest.raises(ServiceError, match="unknown parameter"):
        parse({"prompt": "hi", "max_gen_len": 5, "top_k": 3}, "llama")


def test_response_shapes() -> None:
    last = Delta("", finish_reason="length", prompt_tokens=7, completion_tokens=3)
    bedrock = response_body(parse({"prompt": "x"}), "abc", last, "arn")  # type: ignore[arg-type]
    assert bedrock == {
        "generation": "abc",
        "prompt_token_count": 7,
        "generation_token_count": 3,
        "stop_reason": "length",
    }
    chat = response_body(parse({"messages": [{"role": "user", "content": "x"}]}), "abc", last, "arn")  # type: ignore[arg-type]
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "abc"}
    assert chat["choices"][0]["finish_reason"] == "length"
    assert chat["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    mistral = response_body(parse({"prompt": "x"}, "mistral"), "abc", last, "arn")  # type: ignore[arg-type]
    assert mistral == {"outputs": [{"text": "abc", "stop_reason": "length"}]}


def test_stream_chunks_end_with_metrics() -> None:
    deltas = [Delta("a"), Delta("b"), Delta("", finish_reason="stop", prompt_tokens=4, completion_tokens=2)]
    request = parse({"prompt": "x", "max_tokens": 4}, stream=True)
    chunks = list(stream_chunks(request, deltas, "arn", started=0.0))  # type: ignore[arg-type]
    assert [c["choices"][0]["text"] for c in chunks] == ["a", "b", ""]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "stop"]
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 2
    assert "amazon-bedrock-invocationMetrics" not in chunks[0]


@pytest.mark.parametrize("key", ["m/../../etc/passwd", "m//x", "m/./x", "m/a\\b", "m/"])
def test_s3_keys_that_would_escape_are_refused(key: str) -> None:
    with pytest.raises(ImportFailed, match="not a safe file name"):
        safe_relative_key(key, "m/")


def test_s3_keys_map_inside_the_model_dir() -> None:
    assert str(safe_relative_key("m/sub/config.json", "m/")) == "sub/config.json"
    assert parse_s3_uri("s3://bucket/a/b") == ("bucket", "a/b/")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")


def test_store_refuses_ids_that_are_not_bedrock_ids(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for bad in ("../x", "abc", "ABCDEFGHIJKL", "abcdefghijk/"):
        with pytest.raises(ValueError, match="not a local Bedrock id"):
            store.weights_dir(bad)
    assert store.weights_dir("abcdefghijkl") == tmp_path / "models" / "abcdefghijkl" / "weights"


def test_a_family_with_only_the_openai_formats_reads_a_prompt_as_openai_and_refuses_bedrock() -> None:
    openai_only = ("OpenAICompletion", "OpenAIChatCompletion")  # GPT-OSS
    raw = json.dumps({"prompt": "hi", "max_tokens": 5}).encode()
    request = parse_invoke_body(raw, "openai", max_tokens_limit=4096, stream=False, api_formats=openai_only)
    assert request.format.name == "OpenAICompletion"
    raw = json.dumps({"prompt": "hi", "max_gen_len": 5}).encode()
    with pytest.raises(
        ServiceError, match="takes only the OpenAICompletion and OpenAIChatCompletion formats"
    ):
        parse_invoke_body(raw, "openai", max_tokens_limit=4096, stream=False, api_formats=openai_only)
    # Every other family reads the same body as BedrockCompletion, as before.
    assert parse({"prompt": "hi", "max_gen_len": 5}).format.name == "BedrockCompletion"


@pytest.mark.parametrize("messages", [False, True])
def test_stream_options_include_usage_sends_usage_in_a_chunk_of_its_own(messages: bool) -> None:
    from bedrock_ft.runtime.codecs import get_codec

    deltas = [Delta("a"), Delta("b"), Delta("", finish_reason="stop", prompt_tokens=4, completion_tokens=2)]
    body: dict[str, object] = {"max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}
    body.update({"messages": [{"role": "user", "content": "x"}]} if messages else {"prompt": "x"})
    request = parse(body, stream=True)
    chunks = list(stream_chunks(request, deltas, "arn", started=0.0))  # type: ignore[arg-type]
    # As OpenAI streams it: the last choice with its finish reason, then usage with no choices.
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and "usage" not in chunks[-2]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2
    # The client's codecs read it: the text, the finish reason, and the counts from the usage chunk.
    codec = get_codec(request.format.name)
    decoded = [codec.decode_chunk(c) for c in chunks]
    assert "".join(d.text for d in decoded) == "ab"
    assert [d.finish_reason for d in decoded][-2:] == ["stop", None]
    assert (decoded[-1].input_tokens, decoded[-1].output_tokens) == (4, 2)
