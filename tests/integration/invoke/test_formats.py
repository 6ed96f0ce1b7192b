"""Every invoke format with the embedded model, through real boto3 calls to the local Bedrock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import ImportedModel
from bedrock_ft.errors import MalformedResponseError, RequestValidationError, UnsupportedFormatError
from bedrock_ft.local import LocalBedrockConfig, LocalStack
from bedrock_ft.runtime import ImportedModelClient, InvokeConfig

from .conftest import QUESTION, as_mistral, import_into

PARIS = "The capital of France is Paris."


def test_chat_goes_as_messages_and_bedrock_applies_the_template(client: ImportedModelClient) -> None:
    answer = client.chat(QUESTION)
    assert answer.api_format == "OpenAIChatCompletion"
    assert answer.text == PARIS
    assert answer.finish_reason == "stop"
    assert answer.input_tokens == 37 and answer.output_tokens == 7  # ChatML system + question; 7 answer
    assert answer.latency_s > 0 and answer.attempts == 1


@pytest.mark.parametrize("api_format", ["BedrockCompletion", "OpenAICompletion"])
def test_complete_in_each_prompt_format(client: ImportedModelClient, api_format: str) -> None:
    prompt = client.render_chat(QUESTION)
    answer = client.complete(prompt, api_format=api_format)
    assert answer.api_format == api_format
    assert answer.text == PARIS  # the client-rendered prompt is exactly the server-rendered one
    assert (answer.input_tokens, answer.output_tokens, answer.finish_reason) == (37, 7, "stop")


def test_temperature_zero_is_greedy_and_reproducible_in_every_format(
    served: tuple[LocalStack, ImportedModel], client: ImportedModelClient
) -> None:
    # Raw bodies, as any client sends them: temperature 0 decodes greedily, whatever the seed, top_p or
    # top_k alongside it, and every format answers the same.
    stack, imported = served
    runtime = stack.aws_config().client("bedrock-runtime")
    prompt = client.render_chat(QUESTION)
    messages = list(QUESTION)
    bodies = [
        {"prompt": prompt, "max_gen_len": 24, "temperature": 0},
        {"prompt": prompt, "max_gen_len": 24, "temperature": 0, "seed": 7, "top_p": 0.3, "top_k": 5},
        {"prompt": prompt, "max_tokens": 24, "temperature": 0, "seed": 11, "n": 1},
        {"messages": messages, "max_tokens": 24, "temperature": 0, "seed": 3},
    ]
    texts = []
    for body in bodies * 2:
        data = json.loads(
            runtime.invoke_model(modelId=imported.model_arn, body=json.dumps(body))["body"].read()
        )
        texts.append(
            data.get("generation")
            or data["choices"][0].get("text")
            or data["choices"][0]["message"]["content"]
        )
    assert texts == [PARIS] * len(texts)


def test_chat_as_a_prompt_with_the_training_template(client: ImportedModelClient) -> None:
    answer = client.chat(QUESTION, api_format="BedrockCompletion")
    assert answer.api_format == "BedrockCompletion" and answer.text == PARIS


def test_max_tokens_and_stop_sequences_are_honoured(client: ImportedModelClient) -> None:
    short = client.complete(client.render_chat(QUESTION), max_tokens=3)
    assert short.finish_reason == "length" and short.output_tokens == 3
    assert PARIS.startswith(short.text)
    stopped = client.chat(QUESTION, stop=[" Paris"])
    assert stopped.text == "The capital of France is" and stopped.finish_reason == "stop"


def test_converse(client: ImportedModelClient) -> None:
    answer = client.converse(QUESTION)
    assert answer.api_format == "Converse" and answer.text == PARIS
    assert (answer.input_tokens, answer.output_tokens, answer.finish_reason) == (37, 7, "stop")
    system = client.converse(QUESTION, system="Answer in one word.")
    assert system.input_tokens != answer.input_tokens  # the system prompt replaced the default one


def test_converse_stream(client: ImportedModelClient) -> None:
    before = client.usage.snapshot()
    with client.converse_stream(QUESTION) as stream:
        chunks = list(stream)
    assert len(chunks) > 3 and "".join(chunks) == PARIS
    done = stream.completion
    assert done is not None and done.api_format == "Converse"
    assert (done.input_tokens, done.output_tokens, done.finish_reason) == (37, 7, "stop")
    assert client.usage.requests == before.requests + 1


def test_streaming_yields_the_same_answer_in_pieces(client: ImportedModelClient) -> None:
    for payload in (QUESTION, client.render_chat(QUESTION)):
        with client.stream(payload) as stream:
            chunks = list(stream)
        assert len(chunks) > 3 and "".join(chunks) == PARIS
        done = stream.completion
        assert done is not None and done.text == PARIS
        assert (done.input_tokens, done.output_tokens, done.finish_reason) == (37, 7, "stop")


def test_a_stream_closed_early_frees_the_model(client: ImportedModelClient) -> None:
    before = client.usage.snapshot()
    stream = client.stream(QUESTION, max_tokens=200)
    first = next(stream)
    stream.close()
    assert first and stream.completion is None and stream.text == first
    assert client.usage.requests == before.requests + 1  # counted: it was sent, and partly answered
    assert client.chat(QUESTION).text == PARIS  # the model was released: the next call is served


def test_async_twins(client: ImportedModelClient) -> None:
    async def main() -> tuple[Any, ...]:
        prompt = client.render_chat(QUESTION)
        many = await asyncio.gather(*(client.acomplete(prompt) for _ in range(4)))
        chat = await client.achat(QUESTION)
        converse = await client.aconverse(QUESTION)
        chunks = [chunk async for chunk in client.astream(QUESTION)]
        assert "".join([chunk async for chunk in client.aconverse_stream(QUESTION)]) == PARIS
        batch = await client.abatch_complete([prompt, prompt])
        assert await client.awarm_up() > 0
        return many, chat, converse, chunks, batch

    many, chat, converse, chunks, batch = asyncio.run(main())
    assert [m.text for m in many] == [PARIS] * 4
    assert chat.text == converse.text == "".join(chunks) == PARIS
    assert batch.texts == [PARIS, PARIS]


def test_usage_is_counted_per_client(client: ImportedModelClient) -> None:
    before = client.usage.snapshot()
    client.chat(QUESTION)
    with client.stream(QUESTION) as stream:
        list(stream)
    client.converse(QUESTION)
    after = client.usage.snapshot()
    assert after.requests - before.requests == 3
    assert after.input_tokens - before.input_tokens == 3 * 37
    assert after.output_tokens - before.output_tokens == 3 * 7


def test_from_arn_describes_the_model(
    served: tuple[LocalStack, ImportedModel], aws_credentials: None
) -> None:
    stack, imported = served
    config = InvokeConfig(aws=stack.aws_config(), generation={"temperature": 0.0, "max_tokens": 24})
    client = ImportedModelClient.from_arn(str(imported.model_arn), config)
    assert client.model.architecture == "llama" and client.model.instruct_supported is True
    # The training template and its tokens, read from the files Bedrock imported the model from.
    assert client.model.chat_template == imported.chat_template and client.model.chat_template
    assert client.model.special_tokens == imported.special_tokens
    assert client.model.adds_bos_token is False  # SmolLM2's tokenizer adds no BOS
    assert client.formats == ("BedrockCompletion", "OpenAICompletion", "OpenAIChatCompletion", "Converse")
    assert client.chat(QUESTION).text == PARIS
    assert client.chat(QUESTION, api_format="OpenAICompletion").text == PARIS
    bare = ImportedModelClient.from_arn(str(imported.model_arn), config, describe=False)
    assert bare.complete(client.render_chat(QUESTION)).text == PARIS


def test_a_response_of_the_wrong_shape_quotes_the_body(
    make_client: Callable[..., ImportedModelClient], served: tuple[LocalStack, ImportedModel]
) -> None:
    # An artifact that says "Mistral, imported in 2025": the client sends Mistral's native body, but
    # the model answers in the OpenAI completion shape it really has.
    _, imported = served
    wrong = imported.model_copy(
        update={
            "architecture": "mistral",
            "api_formats": (),
            "creation_time": datetime(2025, 6, 1, tzinfo=timezone.utc),
        }
    )
    client = make_client(wrong, generation={"temperature": 0.0, "max_tokens": 4})
    with pytest.raises(
        MalformedResponseError, match=r"mistral: the response has no outputs\[0\]: '\{\"id\": \"cmpl-"
    ):
        client.complete("Hello")
    assert client.usage.errors == 1


def test_the_service_still_validates_what_only_it_can_know(client: ImportedModelClient) -> None:
    before = client.usage.snapshot()
    with pytest.raises(
        RequestValidationError, match="'max_gen_len' must be between 1 and 4096, got 5000"
    ) as info:
        client.complete("Hello", max_tokens=5000)
    assert info.value.aws is not None and info.value.aws.code == "ValidationException"
    assert info.value.attempts == 1  # type: ignore[attr-defined]  # never retried
    with pytest.raises(RequestValidationError, match="got 5000"):
        client.stream("Hello", max_tokens=5000)
    after = client.usage.snapshot()
    assert (after.errors - before.errors, after.retries - before.retries, after.requests) == (
        2,
        0,
        before.requests,
    )


# --- the legacy native bodies ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def legacy(
    embedded_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalStack, dict[str, ImportedModel]]]:
    """Models imported as before 2025-11-11: each takes only its family's native body."""
    config = LocalBedrockConfig(
        idle_unload_seconds=None, legacy_invoke_format=True, data_dir=tmp_path_factory.mktemp("legacy")
    )
    mistral_dir = as_mistral(embedded_dir, tmp_path_factory.mktemp("mistral") / "model")
    with LocalStack(config, export_env=False) as stack:
        models = {
            "llama": import_into(stack, embedded_dir, "legacy-llama"),
            "mistral": import_into(stack, mistral_dir, "legacy-mistral"),
        }
        yield stack, models


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_legacy_native_bodies(
    legacy: tuple[LocalStack, dict[str, ImportedModel]], aws_credentials: None, family: str
) -> None:
    stack, models = legacy
    # What BedrockImporter would report for a model imported before 2025-11-11.
    imported = models[family].model_copy(
        update={"api_formats": (), "creation_time": datetime(2025, 6, 1, tzinfo=timezone.utc)}
    )
    config = InvokeConfig(aws=stack.aws_config(), generation={"temperature": 0.0, "max_tokens": 24})
    client = ImportedModelClient(imported, config)
    client.warm_up()
    assert client.formats == (family, "Converse")
    chat = client.chat(QUESTION)  # rendered with the training (ChatML) template, sent as a prompt
    assert (chat.api_format, chat.text, chat.finish_reason) == (family, PARIS, "stop")
    # Mistral's body has no token counts: they come from Bedrock's response headers.
    assert (chat.input_tokens, chat.output_tokens) == (37, 7)
    with client.stream(QUESTION) as stream:
        assert "".join(stream) == PARIS
    assert stream.completion is not None and stream.completion.output_tokens == 7
    # The explicit format does the same; a new format is refused before sending.
    explicit = ImportedModelClient(models[family], config.replace(api_format=family))
    assert explicit.chat(QUESTION).text == PARIS
    with pytest.raises(UnsupportedFormatError, match="does not take the OpenAICompletion format"):
        client.complete("Hello", api_format="OpenAICompletion")


# --- the CLI -------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(served: tuple[LocalStack, ImportedModel], monkeypatch: pytest.MonkeyPatch) -> str:
    stack, imported = served
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    return str(imported.model_arn)


def test_cli_invoke_chat_complete_and_stream(
    run_cli: Callable[..., tuple[int, str, str]], cli_env: str
) -> None:
    code, out, err = run_cli(
        "invoke", "--model", cli_env, "What is the capital of France?", "--chat", "--temperature", "0"
    )
    assert code == 0, err
    assert out.strip() == PARIS
    assert "OpenAIChatCompletion, finish stop, 37 tokens in, 7 out" in err
    code, out, err = run_cli(
        "invoke", "--model", cli_env, "What is the capital of France?", "--chat", "--stream",
        "--format", "BedrockCompletion", "--temperature", "0",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == PARIS and "BedrockCompletion" in err
    code, out, err = run_cli(
        "invoke",
        "--model",
        cli_env,
        "The capital of France is",
        "--max-tokens",
        "3",
        "--json",
        "--temperature",
        "0",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["api_format"] == "BedrockCompletion" and result["finish_reason"] == "length"
    assert result["output_tokens"] == 3 and result["model_arn"] == cli_env


def test_cli_invoke_converse_and_an_imported_model_manifest(
    run_cli: Callable[..., tuple[int, str, str]],
    cli_env: str,
    served: tuple[LocalStack, ImportedModel],
    tmp_path: Path,
) -> None:
    code, out, err = run_cli(
        "invoke",
        "--model",
        cli_env,
        "What is the capital of France?",
        "--format",
        "Converse",
        "--temperature",
        "0",
    )
    assert code == 0, err
    assert out.strip() == PARIS and "Converse" in err
    code, out, err = run_cli(
        "invoke", "--model", cli_env, "What is the capital of France?", "--format", "Converse", "--stream",
        "--temperature", "0", "--stop", " Paris",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == "The capital of France is" and "Converse, finish stop" in err
    _, imported = served
    imported.write(tmp_path)
    code, out, err = run_cli(
        "invoke", "--model", str(tmp_path), "What is the capital of France?", "--chat", "--temperature", "0"
    )
    assert code == 0, err
    assert out.strip() == PARIS


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["--model", "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-8b-instruct-v1:0"],
            "not a Bedrock ARN",
        ),
        (["--temperature", "7"], "temperature: Input should be less than or equal to 2"),
        (["--format", "mistral"], "the mistral body is for mistral models; this is a llama model"),
    ],
)
def test_cli_invoke_bad_input_is_one_line(
    run_cli: Callable[..., tuple[int, str, str]], cli_env: str, args: list[str], needle: str
) -> None:
    model = [] if "--model" in args else ["--model", cli_env]
    code, out, err = run_cli("invoke", *model, *args, "Hello")
    assert code == 1 and out == ""
    assert err.startswith("error: ") and needle in err and len(err.strip().splitlines()) <= 2
