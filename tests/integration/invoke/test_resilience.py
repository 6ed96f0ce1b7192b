"""Cold starts, throttling and batches against the local Bedrock: what the retry policy is for.

The model is served by the scripted engine: what is tested is the client, the server and the HTTP
between them, and the answers only need to say which prompt they belong to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import ImportedModel
from bedrock_ft.errors import (
    ModelError,
    ModelNotReadyError,
    ModelTimeoutError,
    RequestValidationError,
    ServiceUnavailableError,
    ThrottledError,
)
from bedrock_ft.local import LocalStack
from bedrock_ft.runtime import BatchItem, ImportedModelClient, InvokeConfig, RetryEvent
from integration.scripted import ScriptedEngine

from .conftest import import_into

StackFactory = Callable[..., LocalStack]


@pytest.fixture
def tiny_served(
    new_stack: StackFactory, tiny_model_dir: Path, aws_credentials: None
) -> Callable[..., tuple[LocalStack, ImportedModel]]:
    """A fresh stack with the tiny model imported, cold (never invoked). It loads in half a second and
    answers each prompt with its last word."""

    def start(name: str, **settings: Any) -> tuple[LocalStack, ImportedModel]:
        engine = ScriptedEngine(answer=lambda prompt: prompt.split()[-1], load_seconds=0.5)
        stack = new_stack(idle_unload_seconds=None, engine=engine, **settings)
        return stack, import_into(stack, tiny_model_dir, name)

    return start


def test_a_cold_start_is_retried_visibly_until_the_model_answers(
    tiny_served: Callable[..., tuple[LocalStack, ImportedModel]],
) -> None:
    stack, imported = tiny_served("cold")
    events: list[RetryEvent] = []
    lines: list[str] = []
    client = ImportedModelClient(
        imported, InvokeConfig(aws=stack.aws_config()), on_retry=events.append, progress=lines.append
    )
    answer = client.complete("Hello", max_tokens=2)
    # 429 ModelNotReadyException first, while the model loads; then the answer.
    assert events and {e.kind for e in events} == {"cold_start"}
    assert all(e.error.aws is not None and e.error.aws.status_code == 429 for e in events)
    assert answer.attempts == len(events) + 1
    assert client.usage.retries == len(events) and client.usage.requests == 1
    assert lines[0].startswith("cold: model not ready (cold start")
    # Warm now: the next call is answered at once.
    assert client.complete("Hello", max_tokens=2).attempts == 1


def test_a_cold_start_longer_than_the_budget_fails_clearly_and_warm_up_waits(
    tiny_served: Callable[..., tuple[LocalStack, ImportedModel]],
) -> None:
    stack, imported = tiny_served("budget")
    impatient = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config(), cold_start_timeout=0))
    with pytest.raises(ModelNotReadyError, match=r"still not ready after 0 s and 1 attempt\(s\)") as info:
        impatient.complete("Hello", max_tokens=2)
    assert "cold_start_timeout" in str(info.value) and "warm_up()" in str(info.value)
    assert impatient.usage.errors == 1
    client = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config()))
    seconds = client.warm_up()
    assert seconds > 0
    assert client.complete("Hello", max_tokens=2).attempts == 1


def test_200_prompts_at_concurrency_8_under_throttling_all_answered_in_order(
    tiny_served: Callable[..., tuple[LocalStack, ImportedModel]],
) -> None:
    stack, imported = tiny_served("throttled", throttle_rps=50.0)
    client = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config()))
    client.warm_up()
    prompts = [" ".join(["word"] * (1 + i % 23)) + f" {i}" for i in range(200)]
    seen: list[BatchItem] = []
    result = client.batch_complete(prompts, max_concurrency=8, max_tokens=1, on_item=seen.append)
    assert len(result) == 200 and result.ok, [str(item.error) for item in result.errors[:3]]
    # In input order, each answer belongs to its prompt: it is the prompt's last word, its number.
    for index, item in enumerate(result):
        assert item.index == index and item.input == prompts[index]
        assert item.completion is not None and item.completion.text == str(index)
        assert item.completion.input_tokens == len(prompts[index].split())
    # Throttled (50 requests/s against 8 workers) and retried, with every retry counted.
    retries = sum(item.completion.attempts - 1 for item in result if item.completion)
    assert retries > 0 and result.usage.retries == retries
    assert result.usage.requests == 200 and result.usage.output_tokens == 200
    assert len(seen) == 200 and sorted(item.index for item in seen) == list(range(200))
    assert client.usage.requests == 201  # the warm-up, and the batch


def test_a_batch_keeps_failed_items_with_their_errors(
    tiny_served: Callable[..., tuple[LocalStack, ImportedModel]],
) -> None:
    stack, imported = tiny_served("mixed", throttle_rps=1.0)
    ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config())).warm_up()
    client = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config(), max_attempts=1))
    result = client.batch_complete(["Hello", "", "Hi", "Hey"], max_concurrency=2, max_tokens=1)
    assert len(result) == 4 and not result.ok
    assert [item.input for item in result] == ["Hello", "", "Hi", "Hey"]
    empty = result[1]
    assert isinstance(empty.error, RequestValidationError) and "the prompt is empty" in str(empty.error)
    failed = [item for item in result if not item.ok]
    # A throttle rate of 1/s with no retries allowed: some items are throttled, and say so.
    assert any(isinstance(item.error, ThrottledError) for item in failed)
    assert result.usage.errors == len(failed)
    assert result.usage.requests == len(result) - len(failed)
    with pytest.raises(
        type(failed[0].error), match=rf"{len(failed)} of 4 item\(s\) failed; item {failed[0].index}"
    ):
        result.raise_for_errors()


STREAM_ERRORS = {
    "ThrottlingException": ThrottledError,
    "ValidationException": RequestValidationError,
    "ModelTimeoutException": ModelTimeoutError,
    "ServiceUnavailableException": ServiceUnavailableError,
    "InternalServerException": ServiceUnavailableError,
    "ModelStreamErrorException": ModelError,
}


def test_an_error_mid_stream_keeps_its_type(
    new_stack: StackFactory, tiny_model_dir: Path, aws_credentials: None
) -> None:
    # The local Bedrock sends the stream's own exception event, in lowerCamel case as Bedrock does
    # (throttlingException...); the client maps it like the same error outside a stream. The scripted
    # model fails with the error the prompt names, after two words.
    engine = ScriptedEngine(answer=lambda prompt: f"two words <raise:{prompt.split()[-1]}>")
    stack = new_stack(idle_unload_seconds=None, cold_start=False, engine=engine)
    client = ImportedModelClient(
        import_into(stack, tiny_model_dir, "streamfail"), InvokeConfig(aws=stack.aws_config())
    )
    for code, error in STREAM_ERRORS.items():
        received: list[str] = []
        with pytest.raises(error) as caught:
            for text in client.stream(f"fail with {code}", max_tokens=8):
                received.append(text)
        assert "".join(received) == "two words", code  # it failed mid-stream, after text was sent
        assert caught.value.aws is not None and caught.value.aws.code == code[:1].lower() + code[1:]
        assert "scripted failure after 2 words" in str(caught.value)


def test_converse_defaults_follow_botocores_documentation(
    new_stack: StackFactory, tiny_model_dir: Path, aws_credentials: None
) -> None:
    # maxTokens unset: "the maximum allowed value for the model", not a fixed 512. topP is in [0, 1]:
    # an explicit 0 is kept (the likeliest token only), not turned into 1.0.
    engine = ScriptedEngine(answer=lambda prompt: " ".join(["word"] * 600))
    stack = new_stack(idle_unload_seconds=None, cold_start=False, engine=engine)
    imported = import_into(stack, tiny_model_dir, "conversedefaults")
    runtime = stack.aws_config().client("bedrock-runtime")
    messages = [{"role": "user", "content": [{"text": "Say many words"}]}]
    out = runtime.converse(modelId=imported.model_arn, messages=messages)
    assert len(out["output"]["message"]["content"][0]["text"].split()) == 600
    assert out["stopReason"] == "end_turn"
    assert engine.params[-1].max_new_tokens == stack.config.max_new_tokens_limit
    runtime.converse(
        modelId=imported.model_arn, messages=messages, inferenceConfig={"topP": 0, "maxTokens": 4}
    )
    assert engine.params[-1].top_p == 0.0
    runtime.converse(modelId=imported.model_arn, messages=messages, inferenceConfig={"maxTokens": 4})
    assert engine.params[-1].top_p == 0.9  # unset: the local default
