"""Structured output, log probabilities, tools and images without a server: the bodies each codec
sends, the answers it reads (in OpenAI's documented shapes, and as the local Bedrock builds them), and
the local Bedrock's request checks."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import pytest
from pydantic import BaseModel

from bedrock_ft.errors import MalformedResponseError, RequestValidationError, UnsupportedFormatError
from bedrock_ft.local import _features as local_features
from bedrock_ft.local._errors import ServiceError
from bedrock_ft.local._formats import parse_invoke_body, response_body
from bedrock_ft.local.engine import Delta, TokenLogprob, UnsupportedRequestError
from bedrock_ft.runtime import GenerationParams
from bedrock_ft.runtime._chat import check_messages
from bedrock_ft.runtime._converse import converse_request
from bedrock_ft.runtime._features import split_features
from bedrock_ft.runtime._results import Completion, ToolCall
from bedrock_ft.runtime.codecs import get_codec, parse_json

from .test_invoke import offline_client

ARN = "arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghij12"
PARAMS = GenerationParams(max_tokens=16)
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


class Car(BaseModel):
    brand: str
    model: str


def body(fmt: str, **asked: Any) -> dict[str, Any]:
    features, _ = split_features(asked, call="test")
    codec = get_codec(fmt)
    if codec.takes_messages:
        return codec.body(PARAMS, messages=[{"role": "user", "content": "Hi"}], features=features)
    return codec.body(PARAMS, prompt="Hi", features=features)


# --- requests -------------------------------------------------------------------------------------


def test_each_format_carries_the_features_in_its_own_shape() -> None:
    chat = body("OpenAIChatCompletion", logprobs=3, response_format=Car, tools=[TOOL], tool_choice="auto")
    assert chat["logprobs"] is True and chat["top_logprobs"] == 3
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Car", "schema": Car.model_json_schema()},
    }
    assert chat["tools"] == [TOOL] and chat["tool_choice"] == "auto"
    completion = body("OpenAICompletion", logprobs=2, response_format="json_object")
    assert completion["logprobs"] == 2 and completion["response_format"] == {"type": "json_object"}
    # AWS's BedrockCompletion example sends the schema itself as json_schema.
    bedrock = body("BedrockCompletion", response_format=Car)
    assert bedrock["response_format"] == {"type": "json_schema", "json_schema": Car.model_json_schema()}
    assert "logprobs" not in body("OpenAIChatCompletion")  # nothing asked, nothing sent


@pytest.mark.parametrize(
    ("fmt", "asked", "needle"),
    [
        ("BedrockCompletion", {"logprobs": 1}, "BedrockCompletion format has no logprobs"),
        ("BedrockCompletion", {"tools": [TOOL]}, "has no tools"),
        (
            "OpenAICompletion",
            {"tools": [TOOL]},
            "has no tools: offer them with chat.. in OpenAIChatCompletion",
        ),
        ("OpenAICompletion", {"logprobs": 6}, "at most 5"),
        ("mistral", {"response_format": "json_object"}, "mistral format has no response_format"),
        ("llama", {"logprobs": 1}, "llama format has no logprobs"),
    ],
)
def test_a_feature_the_format_lacks_is_refused(fmt: str, asked: dict[str, Any], needle: str) -> None:
    with pytest.raises(UnsupportedFormatError, match=needle):
        body(fmt, **asked)


@pytest.mark.parametrize(
    ("asked", "needle"),
    [
        ({"logprobs": 21}, "logprobs must be True or the number"),
        ({"response_format": 3}, "response_format must be a pydantic model class"),
        ({"tools": [{"name": "x"}]}, r"tools\[0\] must be"),
        ({"tools": []}, "tools is empty"),
        ({"tools": [{"type": "function", "function": {"name": "get weather"}}]}, r"tools\[0\].function.name"),
        ({"tool_choice": "auto"}, "tool_choice needs tools"),
        ({"tools": [TOOL], "tool_choice": "always"}, "tool_choice must be 'none', 'auto', 'required'"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}},
            "tool_choice names 'other', which is not among the tools",
        ),
        ({"response_format": {"type": "text"}}, "is the default"),
        (
            {"response_format": {"type": "json_schema", "json_schema": "x"}},
            "response_format.json_schema must",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": []}}},
            "response_format.json_schema.schema must be a JSON Schema",
        ),
        (
            {"response_format": {"type": "object", "properties": {"a": {"type": "nonsense"}}}},
            r"response_format.properties.a.type must be one of array, boolean",
        ),
        ({"response_format": {"type": "object", "required": "a"}}, r"response_format.required must be"),
        (
            {"tools": [{**TOOL, "function": {"name": "f", "parameters": {"type": "dict"}}}]},
            r"tools\[0\].function.parameters.type must be",
        ),
    ],
)
def test_bad_feature_values_are_refused_before_sending(asked: dict[str, Any], needle: str) -> None:
    with pytest.raises(RequestValidationError, match=needle):
        offline_client().chat([{"role": "user", "content": "Hi"}], **asked)


def test_image_parts_stay_parts_and_go_only_as_chat_messages() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}]
    assert check_messages(messages, call="chat()")[0]["content"] == messages[0]["content"]
    assert check_messages([{"role": "user", "content": [{"type": "text", "text": "a"}]}], call="c")[0] == {
        "role": "user",
        "content": "a",
    }
    bad = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "file:///x.png"}}]}]
    with pytest.raises(RequestValidationError, match=r"content\[0\]: an image_url part needs"):
        check_messages(bad, call="chat()")
    with pytest.raises(UnsupportedFormatError, match="image input goes only in OpenAIChatCompletion"):
        offline_client().chat(messages, api_format="BedrockCompletion")


def test_a_tool_call_and_its_result_go_back_as_openai_chat_messages() -> None:
    answer = Completion("", "tool_calls", 1, 1, 0.1, "OpenAIChatCompletion", ARN,
                        tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),))  # fmt: skip
    turns = [
        {"role": "user", "content": "Weather?"},
        answer.as_message(),
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
    ]
    sent = get_codec("OpenAIChatCompletion").body(PARAMS, messages=check_messages(turns, call="chat()"))
    assert sent["messages"][1]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}
    # The local Bedrock reads them back, with each call's arguments as an object for the chat template.
    served = parse_invoke_body(json.dumps({"messages": turns}).encode(), "BedrockCompletion",
                               max_tokens_limit=8, stream=False)  # fmt: skip
    assert served.messages[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert served.messages[2]["tool_call_id"] == "call_1"
    with pytest.raises(RequestValidationError, match="needs the tool_call_id"):
        check_messages([{"role": "tool", "content": "21 C"}], call="chat()")
    with pytest.raises(UnsupportedFormatError, match="go only in OpenAIChatCompletion messages"):
        offline_client().chat(turns, api_format="BedrockCompletion")
    with pytest.raises(
        UnsupportedFormatError, match="tool calls and tool results go as OpenAIChatCompletion"
    ):
        offline_client().converse(turns)
    bad = [
        *turns[:1],
        {"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{"}}]},
    ]
    with pytest.raises(ServiceError, match=r"messages\[1\].tool_calls\[0\] must be"):
        parse_invoke_body(json.dumps({"messages": bad}).encode(), "BedrockCompletion",
                          max_tokens_limit=8, stream=False)  # fmt: skip


def test_converse_sends_a_data_url_image_as_an_image_block_with_its_bytes() -> None:
    png = b"\x89PNG\r\n\x1a\n"
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    parts = [{"type": "text", "text": "What is it?"}, {"type": "image_url", "image_url": {"url": url}}]
    request = converse_request([{"role": "user", "content": parts}], PARAMS)
    assert request["messages"][0]["content"] == [
        {"text": "What is it?"},
        {"image": {"format": "png", "source": {"bytes": png}}},
    ]
    linked = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(RequestValidationError, match="an image goes to Converse as bytes"):
        converse_request([{"role": "user", "content": linked}], PARAMS)


# --- responses ------------------------------------------------------------------------------------


def test_tool_calls_are_read_from_openais_documented_shape() -> None:
    data = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_abc",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
    }
    decoded = get_codec("OpenAIChatCompletion").decode(data)
    assert decoded.text == "" and decoded.finish_reason == "tool_calls"
    (call,) = decoded.tool_calls
    assert (call.id, call.name, call.parsed_arguments()) == ("call_abc", "get_weather", {"city": "Paris"})
    data["choices"][0]["message"]["tool_calls"] = [{"id": "x", "function": {}}]
    with pytest.raises(MalformedResponseError, match="no function name"):
        get_codec("OpenAIChatCompletion").decode(data)
    # Arguments that aren't JSON text are the service's error, not an empty call.
    data["choices"][0]["message"]["tool_calls"] = [{"id": "x", "function": {"name": "f", "arguments": {}}}]
    with pytest.raises(
        MalformedResponseError, match=r"tool_calls\[0\].function.arguments should be JSON text"
    ):
        get_codec("OpenAIChatCompletion").decode(data)


@pytest.mark.parametrize(
    ("fmt", "logprobs", "needle"),
    [
        (
            "OpenAIChatCompletion",
            {"content": [{"token": "a", "logprob": -1, "top_logprobs": [{}]}]},
            "top_logprobs",
        ),
        ("OpenAIChatCompletion", {"content": {"token": "a"}}, "content should be a list"),
        ("OpenAICompletion", {"tokens": ["a"], "token_logprobs": [None]}, "token_logprobs"),
        (
            "OpenAICompletion",
            {"tokens": ["a"], "token_logprobs": [-1.0], "top_logprobs": [1]},
            "top_logprobs",
        ),
    ],
)
def test_malformed_logprobs_are_errors_not_dropped(fmt: str, logprobs: Any, needle: str) -> None:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": logprobs}
    if fmt == "OpenAIChatCompletion":
        choice["message"] = {"role": "assistant", "content": "a"}
    else:
        choice["text"] = "a"
    with pytest.raises(MalformedResponseError, match=needle):
        get_codec(fmt).decode({"choices": [choice]})


def _request(body: dict[str, Any]) -> Any:
    return parse_invoke_body(
        json.dumps(body).encode(), "BedrockCompletion", max_tokens_limit=64, stream=False
    )


ENTRIES = (
    TokenLogprob("The", -0.5, (("The", -0.5), ("A", -1.5))),
    TokenLogprob(" end", -0.25, ((" end", -0.25), (" stop", -2.0))),
)


@pytest.mark.parametrize(
    ("fmt", "asked"),
    [("OpenAIChatCompletion", {"logprobs": True, "top_logprobs": 2}), ("OpenAICompletion", {"logprobs": 2})],
)
def test_logprobs_round_trip_in_each_openai_shape(fmt: str, asked: dict[str, Any]) -> None:
    base = (
        {"messages": [{"role": "user", "content": "Hi"}]}
        if fmt.startswith("OpenAIChat")
        else {"prompt": "Hi"}
    )
    request = _request({**base, "max_tokens": 2, **asked})
    assert request.format.name == fmt and request.params.logprobs == 2
    last = Delta("", "length", 3, 2, logprobs=ENTRIES)
    served = json.dumps(response_body(request, "The end", last, ARN)).encode()
    decoded = get_codec(fmt).decode(parse_json(served, fmt=fmt))
    assert decoded.logprobs is not None
    assert [(t.token, t.logprob, t.top) for t in decoded.logprobs] == [
        (e.token, e.logprob, e.top) for e in ENTRIES
    ]


def test_parsed_reads_json_and_says_when_max_tokens_cut_it() -> None:
    def completion(text: str, reason: str, spec: Any) -> Completion:
        return Completion(text, reason, 1, 1, 0.1, "OpenAIChatCompletion", ARN, response_format=spec)

    assert completion('{"brand": "Mazda", "model": "MX-5"}', "stop", Car).parsed == Car(
        brand="Mazda", model="MX-5"
    )
    assert completion('{"a": 1}', "stop", {"type": "object"}).parsed == {"a": 1}
    with pytest.raises(MalformedResponseError, match="cut at max_tokens"):
        _ = completion('{"brand": "Maz', "length", Car).parsed


# --- the local Bedrock's checks ---------------------------------------------------------------------


def test_response_format_is_read_in_openais_shape_and_in_aws_bedrockcompletion_example() -> None:
    schema = {"type": "object", "properties": {"brand": {"type": "string"}}}
    openai = _request({"prompt": "Hi", "max_tokens": 4, "response_format": {
        "type": "json_schema", "json_schema": {"name": "car", "schema": schema}}})  # fmt: skip
    aws = _request({"prompt": "Hi", "response_format": {"type": "json_schema", "json_schema": schema}})
    assert aws.format.name == "BedrockCompletion"
    assert json.loads(openai.params.json_schema) == json.loads(aws.params.json_schema) == schema
    assert json.loads(
        _request({"prompt": "Hi", "response_format": {"type": "json_object"}}).params.json_schema
    ) == {"type": "object"}
    with pytest.raises(ServiceError, match="must be one of json_object, json_schema for BedrockCompletion"):
        _request({"prompt": "Hi", "response_format": {"type": "regex"}})


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 2}, "needs 'logprobs': true"),
        ({"messages": [{"role": "user", "content": "Hi"}], "logprobs": True, "top_logprobs": 21}, "0 and 20"),
        ({"prompt": "Hi", "return_logprobs": True}, "unknown parameter"),
        ({"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "x"}]}, r"tools\[0\]"),
        (
            {"messages": [{"role": "user", "content": "Hi"}], "tool_choice": "auto"},
            "only allowed when 'tools'",
        ),
        (
            {"messages": [{"role": "user", "content": "Hi"}], "tools": [TOOL], "tool_choice": "required"},
            "'tool_choice' 'required' is not supported by the local Bedrock",
        ),
        (
            {"messages": [{"role": "user", "content": "Hi"}], "tools": [TOOL], "parallel_tool_calls": False},
            "'parallel_tool_calls': false is not supported",
        ),
    ],
)
def test_bad_feature_parameters_are_validation_errors(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(ServiceError, match=needle) as caught:
        _request(body)
    assert caught.value.code == "ValidationException"


def test_a_template_takes_tools_only_when_it_renders_them() -> None:
    assert local_features.template_takes_tools("{% if tools %}{{ tools | tojson }}{% endif %}{{ messages }}")
    assert not local_features.template_takes_tools("{% for m in messages %}{{ m.content }}{% endfor %}")
    assert not local_features.template_takes_tools(None)
    # transformers' own Jinja: loop controls and trl's generation tags don't hide the tools.
    looped = (
        "{% for t in tools %}{{ t }}{% break %}{% endfor %}{% generation %}{{ messages }}{% endgeneration %}"
    )
    assert local_features.template_takes_tools(looped)
    text, calls = local_features.split_tool_calls(
        'Sure. <tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call><tool_call>not json</tool_call>'
    )
    assert text == "Sure. <tool_call>not json</tool_call>"
    assert [c["function"] for c in calls] == [{"name": "f", "arguments": '{"x": 1}'}]


def test_structured_output_without_its_library_is_refused_naming_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bedrock_ft.local._constrained import JsonConstraint

    monkeypatch.setitem(sys.modules, "llguidance", None)  # as if not installed
    with pytest.raises(UnsupportedRequestError, match=r"needs the llguidance package.*pip install"):
        JsonConstraint(object(), '{"type": "object"}')
