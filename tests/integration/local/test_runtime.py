"""The runtime over real HTTP with real boto3 clients: every invoke format, streaming, Converse."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bedrock_ft.local import LocalStack

from .conftest import client, invoke_until_ready

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def runtime(embedded_stack: tuple[LocalStack, str]) -> Any:
    return client(embedded_stack[0], "bedrock-runtime")


@pytest.fixture(scope="module")
def arn(embedded_stack: tuple[LocalStack, str]) -> str:
    return embedded_stack[1]


@pytest.fixture(scope="module")
def chatml_prompt(embedded_stack: tuple[LocalStack, str]) -> str:
    """The prompt the chat template renders, so completion formats can ask the same question."""
    return (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_first_call_is_a_cold_start_then_the_model_answers(
    embedded_stack: tuple[LocalStack, str], runtime: Any, arn: str
) -> None:
    stack = embedded_stack[0]
    model_id = arn.rsplit("/", 1)[1]
    stack.service.pool.unload(model_id)  # scaled to zero, as after an idle period (or the import)
    assert not stack.service.pool.is_loaded(model_id)
    body = json.dumps(
        {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 16, "temperature": 0}
    )
    with pytest.raises(ClientError) as caught:
        runtime.invoke_model(modelId=arn, body=body)
    assert caught.value.response["Error"]["Code"] == "ModelNotReadyException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    answer = invoke_until_ready(runtime, arn, json.loads(body))
    assert "Paris" in answer["choices"][0]["message"]["content"]


def test_openai_chat_completion(runtime: Any, arn: str) -> None:
    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 32, "temperature": 0}
    out = invoke_until_ready(runtime, arn, body)
    assert out["object"] == "chat.completion"
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert "Paris" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = out["usage"]
    assert usage["prompt_tokens"] > 10 and 0 < usage["completion_tokens"] < 32
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_bedrock_completion(runtime: Any, arn: str, chatml_prompt: str) -> None:
    out = invoke_until_ready(runtime, arn, {"prompt": chatml_prompt, "max_gen_len": 32, "temperature": 0})
    assert "Paris" in out["generation"]
    assert out["stop_reason"] == "stop"
    assert out["prompt_token_count"] > 10 and out["generation_token_count"] > 0


def test_openai_completion(runtime: Any, arn: str, chatml_prompt: str) -> None:
    out = invoke_until_ready(runtime, arn, {"prompt": chatml_prompt, "max_tokens": 32, "temperature": 0})
    assert out["object"] == "text_completion"
    assert "Paris" in out["choices"][0]["text"]
    assert out["usage"]["completion_tokens"] > 0


def test_length_is_told_from_stop(runtime: Any, arn: str, chatml_prompt: str) -> None:
    out = invoke_until_ready(runtime, arn, {"prompt": chatml_prompt, "max_gen_len": 3, "temperature": 0})
    assert out["stop_reason"] == "length"
    assert out["generation_token_count"] == 3
    out = invoke_until_ready(
        runtime, arn, {"prompt": chatml_prompt, "max_tokens": 32, "stop": [" Paris"], "temperature": 0}
    )
    assert out["choices"][0]["finish_reason"] == "stop"
    assert "Paris" not in out["choices"][0]["text"]


def test_sampling_is_seeded(runtime: Any, arn: str) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0.9, "seed": 7}
    first = invoke_until_ready(runtime, arn, body)["choices"][0]["text"]
    again = invoke_until_ready(runtime, arn, body)["choices"][0]["text"]
    other = invoke_until_ready(runtime, arn, {**body, "seed": 8})["choices"][0]["text"]
    assert first == again
    assert first != other


def test_streaming_is_decoded_by_botocore(runtime: Any, arn: str, chatml_prompt: str) -> None:
    whole = invoke_until_ready(runtime, arn, {"prompt": chatml_prompt, "max_gen_len": 24, "temperature": 0})
    response = runtime.invoke_model_with_response_stream(
        modelId=arn, body=json.dumps({"prompt": chatml_prompt, "max_gen_len": 24, "temperature": 0})
    )
    chunks = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    assert len(chunks) > 2
    assert "".join(chunk["generation"] for chunk in chunks) == whole["generation"]
    last = chunks[-1]
    assert last["stop_reason"] == "stop"
    assert last["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == whole["generation_token_count"]
    assert all(chunk["stop_reason"] is None for chunk in chunks[:-1])


def test_chat_streaming(runtime: Any, arn: str) -> None:
    body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 32, "temperature": 0}
    response = runtime.invoke_model_with_response_stream(modelId=arn, body=json.dumps(body))
    chunks = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert "Paris" in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_converse_and_converse_stream(runtime: Any, arn: str) -> None:
    kwargs: dict[str, Any] = {
        "modelId": arn,
        "messages": [{"role": "user", "content": [{"text": QUESTION}]}],
        "inferenceConfig": {"maxTokens": 32, "temperature": 0},
    }
    out = runtime.converse(**kwargs)
    text = out["output"]["message"]["content"][0]["text"]
    assert "Paris" in text
    assert out["stopReason"] == "end_turn"
    assert out["usage"]["outputTokens"] > 0
    events = list(runtime.converse_stream(**kwargs)["stream"])
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    streamed = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert streamed == text
    short = runtime.converse(**{**kwargs, "inferenceConfig": {"maxTokens": 2, "temperature": 0}})
    assert short["stopReason"] == "max_tokens"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"prompt": "hi", "max_tokens": 0}).encode(), "max_tokens"),
        (json.dumps({"prompt": "hi", "max_gen_len": -5}).encode(), "max_gen_len"),
        (json.dumps({"prompt": "hi", "temperature": -0.1}).encode(), "temperature"),
        (json.dumps({"prompt": "hi", "top_p": 0}).encode(), "top_p"),
        (json.dumps({"prompt": "hi", "max_tokens": 5, "frobnicate": 1}).encode(), "frobnicate"),
        (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), "messages[0].role"),
        (json.dumps({"max_tokens": 5}).encode(), "'prompt'"),
    ],
)
def test_bad_bodies_are_validation_errors(runtime: Any, arn: str, body: bytes, needle: str) -> None:
    with pytest.raises(ClientError) as caught:
        runtime.invoke_model(modelId=arn, body=body)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert needle in error["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_unknown_model_is_resource_not_found(runtime: Any) -> None:
    unknown = "arn:aws:bedrock:us-east-1:123456789012:imported-model/zzzzzzzzzzzz"
    with pytest.raises(runtime.exceptions.ResourceNotFoundException, match="zzzzzzzzzzzz"):
        runtime.invoke_model(modelId=unknown, body=json.dumps({"prompt": "hi"}))
