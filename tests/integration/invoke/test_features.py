"""The features of models imported after 2025-11-11 (AWS's "Advanced API features for imported
models"), through ImportedModelClient and real HTTP to the local Bedrock: log probabilities and
structured output from the embedded model, refusals where it can't (tools, images), and a tool call
round trip through the scripted engine with a template that renders tools."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bedrock_ft import ImportedModel
from bedrock_ft.errors import RequestValidationError, UnsupportedFormatError
from bedrock_ft.local import LocalStack
from bedrock_ft.runtime import ImportedModelClient, InvokeConfig
from integration.scripted import ScriptedEngine

from .conftest import QUESTION, import_into

StackFactory = Callable[..., LocalStack]


class Capital(BaseModel):
    city: str
    country: str


CAPITAL_QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]


def test_logprobs_are_the_models_own_in_both_openai_formats(client: ImportedModelClient) -> None:
    chat = client.chat(QUESTION, logprobs=2, max_tokens=8)
    assert chat.text == "The capital of France is Paris."
    assert chat.logprobs is not None and len(chat.logprobs) == chat.output_tokens == 7
    assert "".join(t.token for t in chat.logprobs) == chat.text
    for entry in chat.logprobs:
        assert entry.logprob <= 0 and len(entry.top) == 2
        # Greedy: the chosen token is the likeliest, and its logprob is the first alternative's.
        assert entry.top[0] == (entry.token, entry.logprob)
        assert entry.top[0][1] >= entry.top[1][1]
        assert sum(math.exp(lp) for _, lp in entry.top) <= 1 + 1e-6
    paris = next(t for t in chat.logprobs if t.token == " Paris")
    assert math.exp(paris.logprob) > 0.9  # the model is sure of it
    # The same tokens scored from the same prompt as an OpenAICompletion (the legacy shape): same numbers.
    done = client.complete(
        client.render_chat(QUESTION), api_format="OpenAICompletion", logprobs=2, max_tokens=8
    )
    assert done.logprobs is not None
    assert [t.token for t in done.logprobs] == [t.token for t in chat.logprobs]
    for a, b in zip(done.logprobs, chat.logprobs, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)
    assert client.chat(QUESTION, max_tokens=4).logprobs is None  # not asked: not sent


def test_structured_output_is_constrained_to_the_schema(client: ImportedModelClient) -> None:
    answer = client.chat(CAPITAL_QUESTION, response_format=Capital, max_tokens=40)
    assert answer.finish_reason == "stop"
    capital = answer.parsed
    assert isinstance(capital, Capital) and capital.city == "Paris"
    streamed = client.stream(CAPITAL_QUESTION, response_format=Capital, max_tokens=40)
    assert "".join(streamed) == answer.text  # the same constrained, greedy answer, in chunks
    assert streamed.completion is not None and streamed.completion.parsed == capital  # read as the class
    # BedrockCompletion takes the schema itself as json_schema (AWS's example); any JSON object too.
    prompt = client.render_chat(CAPITAL_QUESTION)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}  # fmt: skip
    done = client.complete(prompt, api_format="BedrockCompletion", response_format=schema, max_tokens=30)
    assert set(done.parsed) == {"city"}
    anything = client.chat(CAPITAL_QUESTION, response_format="json_object", max_tokens=40)
    assert isinstance(json.loads(anything.text), dict)


def test_what_the_local_model_cant_do_is_refused_as_aws_does(
    client: ImportedModelClient, served: tuple[LocalStack, ImportedModel]
) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    with pytest.raises(RequestValidationError, match="does not support tool calling") as refused:
        client.chat(QUESTION, tools=[tool])
    assert refused.value.aws is not None and refused.value.aws.code == "ValidationException"
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    with pytest.raises(RequestValidationError, match=r"content\[1\]: image input needs a model with vision"):
        client.chat([{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}])
    stack, imported = served
    runtime = stack.aws_config().client("bedrock-runtime")
    block = {"image": {"format": "png", "source": {"bytes": b"\x89PNG\r\n"}}}
    with pytest.raises(runtime.exceptions.ValidationException, match="image input needs a model with vision"):
        runtime.converse(modelId=imported.model_arn, messages=[{"role": "user", "content": [block]}])
    with pytest.raises(RequestValidationError, match="image input needs a model with vision"):
        client.converse([{"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}])
    with pytest.raises(RequestValidationError, match=r"properties.a.type must be one of"):  # before sending
        client.chat(QUESTION, response_format={"type": "object", "properties": {"a": {"type": "nonsense"}}})
    dangling = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    with pytest.raises(RequestValidationError, match=r"ValidationException.*JSON schema can.t be enforced"):
        client.chat(QUESTION, response_format=dangling)  # well formed, but llguidance can't compile it
    with pytest.raises(RequestValidationError, match="'logprobs' in a stream"):
        list(client.stream(QUESTION, logprobs=1))
    with pytest.raises(UnsupportedFormatError, match="BedrockCompletion format has no logprobs"):
        client.complete("Hi", api_format="BedrockCompletion", logprobs=1)


TOOLS_TEMPLATE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }} {% endfor %}</tools>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_tool_call_round_trip_through_a_template_that_renders_tools(
    new_stack: StackFactory, tiny_model_dir: Path, tmp_path: Path, aws_credentials: None
) -> None:
    model_dir = tmp_path / "tools-model"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    (model_dir / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": TOOLS_TEMPLATE}))
    call = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'

    def answer(prompt: str) -> str:
        if "<|im_start|>tool\n" in prompt:  # the tool's result came back: answer with it
            return "It is 21 degrees in Paris."
        return call if "<tools>" in prompt else "no tools"

    engine = ScriptedEngine(answer=answer)
    stack = new_stack(idle_unload_seconds=None, engine=engine)
    client = ImportedModelClient(import_into(stack, model_dir, "tools"), InvokeConfig(aws=stack.aws_config()))
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    answer = client.chat([{"role": "user", "content": "Weather in Paris?"}], tools=[tool], tool_choice="auto")
    assert "<tools>get_weather </tools>" in engine.prompts[-1]  # the template was given the tools
    assert answer.finish_reason == "tool_calls" and answer.text == ""
    (called,) = answer.tool_calls
    assert called.name == "get_weather" and called.parsed_arguments() == {"city": "Paris"}
    assert called.id.startswith("call_")
    # The result goes back as OpenAI's API has it: the assistant's turn with its calls, then a tool message.
    turns = [{"role": "user", "content": "Weather in Paris?"}, answer.as_message()]
    turns.append({"role": "tool", "tool_call_id": called.id, "content": '{"celsius": 21}'})
    final = client.chat(turns, tools=[tool])
    assert final.text == "It is 21 degrees in Paris." and final.tool_calls == ()
    assert '<|im_start|>tool\n{"celsius": 21}<|im_end|>' in engine.prompts[-1]
    assert client.chat([{"role": "user", "content": "Hi"}]).tool_calls == ()  # no tools: plain text


def test_a_failing_constraint_ends_its_own_request_not_the_batch(
    embedded_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bedrock_ft.local._constrained import JsonConstraint
    from bedrock_ft.local.engine import SamplingParams, TransformersEngine

    class Stuck:  # a matcher with no token left to allow, as llguidance's is after an error
        def compute_bitmask(self) -> bytes:
            return bytes(49152 // 8)

        def is_error(self) -> bool:
            return False

        def get_error(self) -> str:
            return ""

        def stop_reason(self) -> str:
            return "NoExtension"

    stuck = object.__new__(JsonConstraint)
    stuck._matcher = Stuck()  # type: ignore[attr-defined]
    loaded: Any = TransformersEngine(batch_window=1.0).load(embedded_dir)
    monkeypatch.setattr(type(loaded), "_constraint", lambda self, schema: stuck)
    prompt = loaded.render_chat(QUESTION)
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0, add_special_tokens=False)
    results: dict[str, Any] = {}

    def run(name: str, params: SamplingParams) -> None:
        try:
            results[name] = "".join(d.text for d in loaded.stream(prompt, params))
        except RuntimeError as exc:
            results[name] = exc

    threads = [
        threading.Thread(target=run, args=("plain", greedy)),
        threading.Thread(target=run, args=("schema", dataclasses.replace(greedy, json_schema="{}"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loaded.close()
    assert max(loaded.batch_sizes) == 2  # they shared a batch
    assert isinstance(results["schema"], RuntimeError) and "no token can continue" in str(results["schema"])
    assert results["plain"] == "The capital of France is Paris."
