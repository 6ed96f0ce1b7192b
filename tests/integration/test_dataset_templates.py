"""Chat templates and token statistics on the embedded model's real tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.data import (
    DatasetBuilder,
    DatasetConfig,
    build_synthetic_dataset,
    get_chat_template,
    list_chat_templates,
    resolve_chat_template,
    synthetic_qa,
)
from bedrock_ft.errors import ConfigError

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2 plus 2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3 plus 3?"},
    {"role": "assistant", "content": "6"},
]


@pytest.fixture(scope="module")
def tokenizer(embedded_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_dir)


def read_jsonl(path: str | None) -> list[dict[str, Any]]:
    assert path is not None
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("name", [None, "mistral", "llama3", "chatml", "human_assistant"])
def test_rendering_matches_transformers_apply_chat_template(tokenizer: Any, name: str | None) -> None:
    template = resolve_chat_template(name, tokenizer)
    assert template is not None
    render = template.renderer(tokenizer.special_tokens_map)
    expected = tokenizer.apply_chat_template(CONVERSATION, chat_template=template.source, tokenize=False)
    assert render(CONVERSATION) == expected
    prompt = tokenizer.apply_chat_template(
        CONVERSATION[:2], chat_template=template.source, tokenize=False, add_generation_prompt=True
    )
    assert render(CONVERSATION[:2], add_generation_prompt=True) == prompt


def test_builtin_templates_render_their_documented_shapes() -> None:
    mistral = get_chat_template("mistral").renderer()
    assert (
        mistral(CONVERSATION)
        == "<s>[INST] Be brief.\n\nWhat is 2 plus 2? [/INST] 4</s>[INST] And 3 plus 3? [/INST] 6</s>"
    )
    seed = get_chat_template("human_assistant").renderer()
    assert seed(CONVERSATION[:3]) == "Be brief.\n\nHuman: What is 2 plus 2?</s>\n\nAssistant: 4</s>"
    llama3 = get_chat_template("llama3").renderer()
    assert llama3(CONVERSATION[1:3]).startswith(
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2 plus 2?<|eot_id|>"
    )
    assert set(list_chat_templates()) >= {"mistral", "llama3", "chatml", "human_assistant"}


def test_the_synthetic_dataset_in_one_call(tmp_path: Path, embedded_dir: Path, tokenizer: Any) -> None:
    art = build_synthetic_dataset(tmp_path / "out", n=60, seed=3, tokenizer="embedded")  # the cached model
    assert art.chat_template_name == "tokenizer"  # the default: the tokenizer's own template
    assert art.chat_template == tokenizer.chat_template
    assert art.record_counts == {"train": 48, "test": 12}
    assert art.token_stats is not None and art.token_stats.max < 80  # short: quick to train on a CPU
    evals = read_jsonl(art.eval_uri)
    expected = synthetic_qa(60, seed=3)
    assert {(e["question"], e["answer"], e["category"]) for e in evals} <= {
        (r["question"], r["answer"], r["category"]) for r in expected
    }


def test_token_stats_text_column_and_length_filter(
    tmp_path: Path, embedded_dir: Path, tokenizer: Any
) -> None:
    records = synthetic_qa(120, seed=4)
    records[5] = {**records[5], "answer": "word " * 300}  # one very long answer
    cfg = DatasetConfig(
        output=str(tmp_path / "out"),
        format="qa",
        tokenizer=str(embedded_dir),
        chat_template="chatml",
        text_column=True,
        max_tokens=200,
        max_length=21,
        test_size=0.25,
    )
    art = DatasetBuilder(cfg, source=records).build()
    assert art.dropped == {"too_long": 1}
    assert art.dropped_examples["too_long"][0].index == 5
    assert art.chat_template_name == "chatml"
    train = read_jsonl(art.train_uri)
    for row in train:
        assert row["text"] == tokenizer.apply_chat_template(
            row["messages"], chat_template=art.chat_template, tokenize=False
        )
    lengths = sorted(len(tokenizer(r["text"], add_special_tokens=False)["input_ids"]) for r in train)
    stats = art.token_stats
    assert stats is not None
    assert (stats.min, stats.max, stats.max_length) == (lengths[0], lengths[-1], 21)
    assert stats.min <= stats.median <= stats.p95 <= stats.max
    assert stats.over_max_length == pytest.approx(sum(n > 21 for n in lengths) / len(lengths), abs=1e-6)
    assert 0 < stats.over_max_length < 1


def test_custom_template_strings_and_files(tmp_path: Path) -> None:
    custom = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    (tmp_path / "t.jinja").write_text(custom)
    for i, value in enumerate((custom, str(tmp_path / "t.jinja"))):
        cfg = DatasetConfig(
            output=str(tmp_path / f"out{i}"), format="qa", chat_template=value, text_column=True
        )
        art = DatasetBuilder(cfg, source=synthetic_qa(5)).build()
        assert art.chat_template_name == "custom"
        assert art.chat_template == custom
        row = read_jsonl(art.train_uri)[0]
        assert (
            row["text"] == f"<user>{row['messages'][0]['content']}<assistant>{row['messages'][1]['content']}"
        )


def test_broken_templates_and_unknown_names_are_config_errors(tmp_path: Path, tokenizer: Any) -> None:
    with pytest.raises(ConfigError, match=r"chat_template: template 'custom' is not valid Jinja: line 1"):
        resolve_chat_template("{% for m in messages %}", None).renderer()  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match=r"unknown chat template .vicuna.; built-in and registered: chatml"):
        resolve_chat_template("vicuna", None)
    no_template = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    no_template.chat_template = None
    with pytest.raises(ConfigError, match="has no chat template of its own"):
        resolve_chat_template(None, no_template)


def test_a_template_that_refuses_a_conversation_drops_it(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
        {
            "messages": [
                {"role": "user", "content": "Q1"},
                {"role": "user", "content": "Q2"},
                {"role": "assistant", "content": "A"},
            ]
        },
    ]
    cfg = DatasetConfig(output=str(tmp_path / "o"), format="messages", chat_template="mistral", test_size=0)
    art = DatasetBuilder(cfg, source=rows).build()
    assert art.dropped == {"template_error": 1}
    assert "alternate" in art.dropped_examples["template_error"][0].detail


def test_a_loaded_tokenizer_can_be_passed_in(tmp_path: Path, tokenizer: Any) -> None:
    cfg = DatasetConfig(output=str(tmp_path / "o"), format="qa", test_size=0)
    art = DatasetBuilder(cfg, source=synthetic_qa(20), tokenizer=tokenizer).build()
    assert art.token_stats is not None and art.token_stats.min > 0
    assert art.chat_template == tokenizer.chat_template
