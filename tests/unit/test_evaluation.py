"""Evaluator inputs, without fmeval: configs, reading records (every bad input named by field and line),
targets and prompts. Scoring and the engines are tested in tests/integration/evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft import ConfigError, DatasetArtifact, DatasetError, EvalConfig, EvaluationError
from bedrock_ft.evaluation._data import load_records
from bedrock_ft.evaluation._target import TargetAdapter


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_config_defaults_and_problems_named_by_field() -> None:
    cfg = EvalConfig()
    assert (cfg.engine, cfg.question_location, cfg.target_location, cfg.target_delimiter) == (
        "fast",
        "question",
        "answer",
        "<OR>",
    )
    assert not cfg.bertscore  # opt-in: it needs a model download
    with pytest.raises(ConfigError) as caught:
        EvalConfig(
            engine="ray",
            prompt_template="Q: {question}",
            bertscore_model="bert-base",
            target_location="answer[",
            max_records=0,
        )
    text = str(caught.value)
    for field in ("engine", "prompt_template", "bertscore_model", "target_location", "max_records"):
        assert field in text, field
    assert "$model_input" in text
    # fmeval's placeholder exactly once, and no stray '$': what would fail at run time fails now.
    for bad in (
        "Cost in $USD: $model_input",
        "$$model_input",
        "$model_input and $model_input",
        "$ $model_input",
    ):
        with pytest.raises(ConfigError, match="prompt_template"):
            EvalConfig(prompt_template=bad)
    assert EvalConfig(prompt_template="Cost in $$: ${model_input}").prompt_template


def test_reads_records_with_categories_systems_and_blank_lines(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "qa.jsonl",
        [
            {"question": "What is 2 plus 2?", "answer": "4", "category": "arithmetic"},
            "",
            {"question": "Capital of France?", "answer": "Paris", "system": "Be terse."},
        ],
    )
    uri, records = load_records(path, EvalConfig())
    assert uri == str(path)
    assert [(r.index, r.line, r.question, r.target, r.category, r.system) for r in records] == [
        (0, 1, "What is 2 plus 2?", "4", "arithmetic", None),
        (1, 3, "Capital of France?", "Paris", None, "Be terse."),
    ]
    _, first = load_records(path, EvalConfig(max_records=1))
    assert len(first) == 1


def test_missing_target_names_the_field_and_first_bad_line(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "qa.jsonl",
        [{"question": "a?", "answer": "a"}, "", {"question": "b?", "response": "b"}, {"question": "c?"}],
    )
    with pytest.raises(DatasetError) as caught:
        load_records(path, EvalConfig())
    message = str(caught.value)
    assert message.startswith(f"{path} line 3: no target at 'answer'") and "target_location" in message
    assert "['question', 'response']" in message  # what the record has instead
    assert caught.value.field == "answer" and caught.value.record_index == 1


def test_missing_question_names_the_field(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "qa.jsonl", [{"prompt": "a?", "answer": "a"}])
    with pytest.raises(
        DatasetError, match=r"line 1: no question at 'question' \(EvalConfig.question_location\)"
    ):
        load_records(path, EvalConfig())
    _, records = load_records(path, EvalConfig(question_location="prompt"))
    assert records[0].question == "a?"


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_dataset_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match="the dataset is empty"):
        load_records(path, EvalConfig())


def test_bad_json_and_non_objects_name_the_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "qa.jsonl", [{"question": "a?", "answer": "a"}, '{"question": "b?",'])
    with pytest.raises(DatasetError, match="line 2: not valid JSON"):
        load_records(path, EvalConfig())
    _jsonl(path, ['["a?", "a"]'])
    with pytest.raises(DatasetError, match="line 1: a record must be a JSON object, got list"):
        load_records(path, EvalConfig())
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_records(tmp_path / "missing.jsonl", EvalConfig())


def test_triviaqa_style_targets_need_a_location_inside_the_object(tmp_path: Path) -> None:
    row = {
        "question": "Who wrote Hamlet?",
        "answer": {"value": "Shakespeare", "aliases": ["Shakespeare", "Bard"]},
    }
    path = _jsonl(tmp_path / "trivia.jsonl", [row])
    with pytest.raises(DatasetError) as caught:
        load_records(path, EvalConfig())
    message = str(caught.value)
    assert "line 1" in message and "an object with keys aliases, value" in message
    assert "e.g. 'answer.value'" in message  # a location that would work
    _, records = load_records(path, EvalConfig(target_location="answer.value"))
    assert records[0].target == "Shakespeare"
    # A list of strings is read as alternatives, joined as fmeval writes them.
    _, records = load_records(path, EvalConfig(target_location="answer.aliases"))
    assert records[0].target == "Shakespeare<OR>Bard"
    with pytest.raises(DatasetError, match=r"line 1: no target at 'answer.text'"):
        load_records(path, EvalConfig(target_location="answer.text"))
    # SQuAD's answers: the hint points at the text, and a list of offsets is not a list of answers.
    squad = {"question": "q?", "answers": {"answer_start": [3, 9], "text": ["Paris", "paris"]}}
    _jsonl(path, [squad])
    with pytest.raises(DatasetError, match=r"e.g. 'answers.text'"):
        load_records(path, EvalConfig(target_location="answers"))
    with pytest.raises(DatasetError, match=r"is a list, not text \(alternatives must be a list of strings\)"):
        load_records(path, EvalConfig(target_location="answers.answer_start"))
    assert load_records(path, EvalConfig(target_location="answers.text"))[1][0].target == "Paris<OR>paris"


def test_numbers_are_text_but_booleans_are_refused(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "n.jsonl", [{"question": "2+2?", "answer": 4}])
    assert load_records(path, EvalConfig())[1][0].target == "4"
    _jsonl(path, [{"question": "Is it?", "answer": True}])
    with pytest.raises(DatasetError, match="is a boolean, not text"):
        load_records(path, EvalConfig())


def test_dataset_artifact_uses_its_eval_file_else_its_test_split(tmp_path: Path) -> None:
    eval_file = _jsonl(tmp_path / "eval.jsonl", [{"question": "q?", "answer": "a", "category": "c"}])
    test_file = _jsonl(
        tmp_path / "test.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "q2?"},
                    {"role": "assistant", "content": "a2"},
                ]
            }
        ],
    )
    artifact = DatasetArtifact(
        train_uri=str(test_file), test_uri=str(test_file), eval_uri=str(eval_file), format="qa"
    )
    assert load_records(artifact, EvalConfig())[1][0].question == "q?"
    _, records = load_records(artifact.model_copy(update={"eval_uri": None}), EvalConfig())
    assert (records[0].question, records[0].target, records[0].system) == ("q2?", "a2", "S")
    with pytest.raises(DatasetError, match="no test split"):
        load_records(artifact.model_copy(update={"eval_uri": None, "test_uri": None}), EvalConfig())


def test_targets_and_prompts() -> None:
    with pytest.raises(EvaluationError, match="give an ImportedModelClient or a callable"):
        TargetAdapter("not a model", EvalConfig())
    from bedrock_ft.evaluation._data import EvalRecord

    record = EvalRecord(index=0, line=1, question="Cost of $5 apples?", target="5")
    plain = TargetAdapter(lambda prompt: prompt, EvalConfig())
    assert plain.template == "$model_input" and plain.prompt(record) == "Cost of $5 apples?"
    templated = TargetAdapter(len, EvalConfig(prompt_template="Q: $model_input\nA ($$):"))
    assert templated.prompt(record) == "Q: Cost of $5 apples?\nA ($):"


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ARN = "arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghij12"


def test_client_prompts_come_from_the_training_chat_template() -> None:
    from bedrock_ft import ImportedModel, ImportedModelClient
    from bedrock_ft.evaluation._data import EvalRecord

    client = ImportedModelClient(
        ImportedModel(model_name="m", architecture="llama", model_arn=ARN, chat_template=CHATML)
    )
    adapter = TargetAdapter(client, EvalConfig())
    assert adapter.model_id == ARN
    # fmeval's template: the chat template rendered around $model_input ($ in the template escaped).
    assert adapter.template == "<|im_start|>user\n$model_input<|im_end|>\n<|im_start|>assistant\n"
    record = EvalRecord(index=0, line=1, question="Price of $5?", target="5")
    user = [{"role": "user", "content": "Price of $5?"}]
    assert adapter.prompt(record) == client.render_chat(user)
    # A record's own system message goes with it, as in training.
    with_system = EvalRecord(index=0, line=1, question="Price of $5?", target="5", system="Be terse.")
    assert adapter.prompt(with_system) == client.render_chat(
        [{"role": "system", "content": "Be terse."}, *user]
    )
    # No template known: never a guessed one.
    bare = ImportedModelClient(ImportedModel(model_name="m", architecture="llama", model_arn=ARN))
    with pytest.raises(EvaluationError, match="carries no chat template"):
        TargetAdapter(bare, EvalConfig())
    assert TargetAdapter(bare, EvalConfig(prompt_template="[INST] $model_input [/INST]")).prompt(record) == (
        "[INST] Price of $5? [/INST]"
    )


def test_a_client_travels_as_what_rebuilds_it() -> None:
    """Ray (the fmeval engine) and multiprocessing pickle targets: a client, or a closure over one."""
    import pickle

    from bedrock_ft import ImportedModel, ImportedModelClient, InvokeConfig

    client = ImportedModelClient(
        ImportedModel(model_name="m", architecture="llama", model_arn=ARN, chat_template=CHATML),
        InvokeConfig(max_concurrency=3),
    )
    client._client()  # open its connections: they must not travel
    copy = pickle.loads(pickle.dumps(client))
    assert isinstance(copy, ImportedModelClient) and copy is not client
    assert copy.model == client.model and copy.config == client.config
    assert copy.render_chat([{"role": "user", "content": "hi"}]) == client.render_chat(
        [{"role": "user", "content": "hi"}]
    )
