"""DatasetConfig validation, split sizes and the synthetic generators (no heavy packages)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bedrock_ft.data import DatasetConfig, split_counts, synthetic_openorca, synthetic_qa
from bedrock_ft.errors import ConfigError, DatasetError


def test_the_seed_recipe_is_a_few_lines_of_config(tmp_path: Path) -> None:
    path = tmp_path / "dataset.yaml"
    path.write_text(
        "source: Open-Orca/OpenOrca\nformat: openorca\nid_contains: flan\n"
        "train_size: 0.035\ntest_size: 0.01\nseed: 42\noutput: s3://bucket/datasets/flan\n"
    )
    cfg = DatasetConfig.from_file(path)
    assert (cfg.train_size, cfg.test_size) == (0.035, 0.01)
    assert isinstance(cfg.train_size, float)
    assert DatasetConfig(output="x", train_size=100, test_size=10).train_size == 100


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        DatasetConfig(output="out", format="orca", chat_template="vicuna", id_regex="(", test_size=1.5)
    paths = {p.path for p in info.value.problems}
    assert {"format", "chat_template", "id_regex", "test_size"} <= paths
    text = str(info.value)
    assert "known formats: alpaca, messages, openorca, qa, sharegpt" in text
    assert "chatml, human_assistant, llama3, mistral" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"train_size": 0.8, "test_size": 0.3},
            r"test_size: train_size \(0.8\) and test_size",
        ),
        ({"train_size": 0}, "train_size: must be more than 0"),
        ({"train_size": 0.0}, "train_size: must be more than 0"),
        ({"max_tokens": 512}, "max_tokens: counting tokens needs `tokenizer`"),
        ({"text_column": True}, "text_column: rendering `text` needs `chat_template` or `tokenizer`"),
    ],
)
def test_inconsistent_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DatasetConfig(output="out", **kwargs)  # type: ignore[arg-type]


def test_output_and_source_must_be_usable() -> None:
    with pytest.raises(ConfigError, match="needs a bucket"):
        DatasetConfig(output="s3://")
    with pytest.raises(ConfigError, match="output"):
        DatasetConfig()  # type: ignore[call-arg]
    assert DatasetConfig(output="o", chat_template="{{ messages }}").chat_template == "{{ messages }}"
    assert DatasetConfig(output="o", chat_template="my.jinja").chat_template == "my.jinja"


def test_where_the_output_goes_does_not_change_the_hash() -> None:
    a = DatasetConfig(output="out-a", source="d.jsonl")
    assert a.config_hash() == a.replace(output="s3://b/p", overwrite=True).config_hash()
    assert a.config_hash() != a.replace(seed=1).config_hash()


@pytest.mark.parametrize(
    ("n", "train", "test", "expected"),
    [
        (1000, 0.035, 0.01, (35, 10)),
        (100, None, 0.1, (90, 10)),
        (10, None, 0.25, (7, 3)),  # test rounds up, as in datasets and scikit-learn
        (10, 5, 2, (5, 2)),
        (10, 1.0, 0.0, (10, 0)),
        (10, 0.5, 3, (5, 3)),
    ],
)
def test_split_counts(
    n: int, train: float | int | None, test: float | int, expected: tuple[int, int]
) -> None:
    assert split_counts(n, train, test) == expected


@pytest.mark.parametrize(
    ("n", "train", "test", "message"),
    [
        (10, 8, 3, "ask for 8 \\+ 3 = 11 records, but only 10 remain"),
        (10, None, 11, "test_size=11 asks for 11 records"),
        (20, 0.035, 0.01, "leaves 0 training records"),
    ],
)
def test_split_counts_that_dont_fit_are_refused(
    n: int, train: float | int | None, test: float | int, message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        split_counts(n, train, test)


def test_synthetic_qa_is_seeded_distinct_and_exact() -> None:
    a, b = synthetic_qa(300, seed=1), synthetic_qa(300, seed=1)
    assert a == b
    assert a != synthetic_qa(300, seed=2)
    assert len({r["question"] for r in a}) == 300
    assert {r["category"] for r in a} == {"arithmetic", "capitals", "next", "opposites"}
    for r in a:
        if r["question"].startswith("What is ") and " plus " in r["question"]:
            x, y = r["question"][8:-1].split(" plus ")
            assert r["answer"] == str(int(x) + int(y))
        assert r["answer"] and len(r["answer"].split()) <= 2  # short, exact answers
    capitals = synthetic_qa(5, categories=["capitals"])
    assert all(r["question"].startswith("What is the capital of ") for r in capitals)
    assert {"question": "What is the capital of France?", "answer": "Paris", "category": "capitals"} in (
        synthetic_qa(50, categories=["capitals"])
    )


def test_synthetic_qa_refuses_more_than_it_has() -> None:
    with pytest.raises(ValueError, match="hold only"):
        synthetic_qa(10_000)
    with pytest.raises(ValueError, match="unknown categories"):
        synthetic_qa(5, categories=["poetry"])


def test_synthetic_openorca_is_openorca_shaped() -> None:
    records = list(synthetic_openorca(500, seed=3))
    assert records == list(synthetic_openorca(500, seed=3))
    assert set(records[0]) == {"id", "system_prompt", "question", "response"}
    prefixes = {r["id"].split(".")[0] for r in records}
    assert prefixes == {"flan", "cot", "niv", "t0"}
    share = sum(r["id"].startswith("flan.") for r in records) / len(records)
    assert 0.3 < share < 0.5


def test_importing_the_data_package_loads_no_heavy_module() -> None:
    heavy = ("torch", "transformers", "datasets", "pyarrow", "jinja2", "fmeval", "numpy")
    code = f"import sys, bedrock_ft.data\nprint(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
