"""Record formats and the record processor: pure Python, no datasets or tokenizer needed."""

from __future__ import annotations

from typing import Any

import pytest

from bedrock_ft.data import (
    DropLog,
    IdFilter,
    InvalidRecord,
    get_format,
    list_formats,
    register_format,
    text_field,
    unregister_format,
)
from bedrock_ft.data._filters import RecordProcessor
from bedrock_ft.errors import DatasetError, RegistryError

USER_ANSWER = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]


@pytest.mark.parametrize(
    ("name", "record", "expected"),
    [
        (
            "openorca",
            {"id": "flan.1", "system_prompt": "Be brief.", "question": "Q?", "response": "A."},
            [{"role": "system", "content": "Be brief."}, *USER_ANSWER],
        ),
        ("openorca", {"id": "flan.2", "system_prompt": "", "question": "Q?", "response": "A."}, USER_ANSWER),
        ("alpaca", {"instruction": "Q?", "input": "", "output": "A."}, USER_ANSWER),
        (
            "alpaca",
            {"instruction": "Translate.", "input": "Bonjour", "output": "Hello"},
            [{"role": "user", "content": "Translate.\n\nBonjour"}, {"role": "assistant", "content": "Hello"}],
        ),
        (
            "sharegpt",
            {
                "conversations": [
                    {"from": "system", "value": "S"},
                    {"from": "human", "value": "Q?"},
                    {"from": "gpt", "value": "A."},
                ]
            },
            [{"role": "system", "content": "S"}, *USER_ANSWER],
        ),
        ("messages", {"messages": USER_ANSWER}, USER_ANSWER),
        ("qa", {"question": "Q?", "answer": "A."}, USER_ANSWER),
        (
            "qa",
            {"question": "Q?", "answer": "A.", "context": "Ctx"},
            [{"role": "user", "content": "Ctx\n\nQ?"}, {"role": "assistant", "content": "A."}],
        ),
    ],
)
def test_every_builtin_format_makes_a_conversation(
    name: str, record: dict[str, Any], expected: list[dict[str, str]]
) -> None:
    assert get_format(name).fn(record) == expected


@pytest.mark.parametrize(
    ("name", "record", "reason", "field"),
    [
        ("openorca", {"question": "Q?"}, "missing_field", "response"),
        ("openorca", {"response": "A."}, "missing_field", "question"),
        ("openorca", {"question": "Q?", "response": "   \n"}, "empty_assistant", "response"),
        ("openorca", {"question": "Q?", "response": 5}, "not_a_string", "response"),
        ("openorca", {"question": "", "response": "A."}, "empty_field", "question"),
        ("alpaca", {"instruction": "Q?", "output": None}, "missing_field", "output"),
        ("qa", {"question": ["Q?"], "answer": "A."}, "not_a_string", "question"),
        (
            "sharegpt",
            {"conversations": [{"from": "alien", "value": "x"}]},
            "invalid_record",
            "conversations[0].from",
        ),
        (
            "sharegpt",
            {"conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": " "}]},
            "empty_assistant",
            "conversations[1].value",
        ),
        ("messages", {"messages": [{"role": "user", "content": "Q?"}]}, "missing_field", "messages"),
        (
            "messages",
            {"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": 3}]},
            "not_a_string",
            "messages[1].content",
        ),
    ],
)
def test_bad_records_name_the_reason_and_field(
    name: str, record: dict[str, Any], reason: str, field: str
) -> None:
    with pytest.raises(InvalidRecord) as info:
        get_format(name).fn(record)
    assert (info.value.reason, info.value.field) == (reason, field)


def test_openorca_category_is_the_id_prefix() -> None:
    fmt = get_format("openorca")
    assert fmt.category({"id": "cot.77"}) == "cot"
    assert get_format("qa").category({"category": "math"}) == "math"
    assert get_format("qa").category({}) is None


def test_register_a_format_with_one_function() -> None:
    def dolly(record: Any) -> list[dict[str, str]]:
        return [
            {"role": "user", "content": text_field(record, "instruction")},
            {"role": "assistant", "content": text_field(record, "response", assistant=True)},
        ]

    register_format("dolly_test", dolly)
    try:
        assert "dolly_test" in list_formats()
        assert get_format("dolly_test").fn({"instruction": "Q?", "response": "A."}) == USER_ANSWER
        with pytest.raises(RegistryError, match="already registered"):
            register_format("dolly_test", dolly)
        register_format("dolly_test", dolly, replace=True)
    finally:
        unregister_format("dolly_test")
    assert "dolly_test" not in list_formats()


def test_unknown_or_malformed_format_names_are_refused() -> None:
    with pytest.raises(RegistryError) as info:
        get_format("orca")
    for known in ("alpaca", "messages", "openorca", "qa", "sharegpt"):
        assert known in str(info.value)
    with pytest.raises(RegistryError, match="malformed"):
        register_format("Bad Name", lambda r: [])


def processor(**kwargs: Any) -> RecordProcessor:
    kwargs.setdefault("fmt", get_format("openorca"))
    return RecordProcessor(drops=DropLog(keep_examples=2), **kwargs)


def orca(i: int, **fields: Any) -> tuple[int, dict[str, Any], str]:
    record = {"id": f"flan.{i}", "system_prompt": "", "question": f"Q{i}?", "response": f"A{i}.", **fields}
    return i, record, f"data.jsonl line {i + 1}"


def test_processor_drops_and_counts_each_reason_with_examples() -> None:
    p = processor(id_filter=IdFilter(contains="flan"), predicate=lambda r: r["question"] != "Q4?")
    batch = [
        orca(0),
        orca(1, id="cot.1"),
        orca(2, response=" "),
        orca(3, question=7),
        orca(4),
        orca(5, question="Q0?", response="A0."),  # a duplicate of record 0
        orca(6),
        (7, ["not", "an", "object"], None),
    ]
    kept = p.process(batch)
    assert [m[0]["content"] for m in kept.messages] == ["Q0?", "Q6?"]
    assert kept.category == ["flan", "flan"]
    assert p.drops.counts == {
        "id_filter": 1,
        "empty_assistant": 1,
        "not_a_string": 1,
        "predicate": 1,
        "duplicate": 1,
        "invalid_record": 1,
    }
    example = p.drops.examples["empty_assistant"][0]
    assert (example.index, example.field) == (2, "response")
    assert "data.jsonl line 3" in example.detail


def test_processor_on_invalid_error_names_record_and_field() -> None:
    p = processor(on_invalid="error")
    with pytest.raises(DatasetError) as info:
        p.process([orca(0), orca(1, response=None)])
    assert (info.value.record_index, info.value.field) == (1, "response")
    assert "record 1, field 'response'" in str(info.value)
    assert "data.jsonl line 2" in str(info.value)


def test_processor_adds_the_system_prompt_and_keeps_only_n_examples() -> None:
    p = processor(system_prompt="Answer briefly.", fmt=get_format("qa"))
    kept = p.process(
        [(i, {"question": "", "answer": "x"}, None) for i in range(5)]
        + [(5, {"question": "Q", "answer": "A"}, None)]
    )
    assert kept.messages[0][0] == {"role": "system", "content": "Answer briefly."}
    assert p.drops.counts == {"empty_field": 5}
    assert len(p.drops.examples["empty_field"]) == 2


def test_id_filter_regex_and_missing_id() -> None:
    f = IdFilter(regex=r"^(flan|t0)\.")
    assert f.reject({"id": "t0.5"}) is None
    assert f.reject({"id": "cot.5"}) is not None
    with pytest.raises(InvalidRecord) as info:
        f.reject({})
    assert (info.value.reason, info.value.field) == ("missing_field", "id")


def test_a_buggy_custom_format_drops_records_instead_of_crashing() -> None:
    register_format("buggy_test", lambda r: [{"role": "user", "content": r["q"].upper()}])
    try:
        p = processor(fmt=get_format("buggy_test"))
        p.process([(0, {"x": 1}, None), (1, {"q": 5}, None), (2, {"q": "hi"}, None)])
        assert p.drops.counts == {"missing_field": 2, "invalid_record": 1}
        assert p.drops.examples["missing_field"][0].field == "q"
    finally:
        unregister_format("buggy_test")
