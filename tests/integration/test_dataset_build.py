"""DatasetBuilder end to end on local files and in-memory records (datasets + pyarrow, no tokenizer)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.artifacts import DatasetArtifact
from bedrock_ft.data import (
    EVAL_FILE,
    TEST_FILE,
    TRAIN_FILE,
    DatasetBuilder,
    DatasetConfig,
    split_counts,
    synthetic_openorca,
    synthetic_qa,
)
from bedrock_ft.data._writers import write_jsonl as write_jsonl_rows
from bedrock_ft.errors import DatasetError


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def build(tmp_path: Path, source: Any = None, name: str = "out", **config: Any) -> DatasetArtifact:
    cfg = DatasetConfig(output=str(tmp_path / name), **config)
    return DatasetBuilder(cfg, source=source).build()


@pytest.fixture
def orca_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "orca.jsonl", synthetic_openorca(2000, seed=5))


def test_the_seed_recipe(tmp_path: Path, orca_file: Path) -> None:
    art = build(
        tmp_path,
        source=str(orca_file),
        format="openorca",
        id_contains="flan",
        train_size=0.035,
        test_size=0.01,
        seed=42,
    )
    flan = [r for r in synthetic_openorca(2000, seed=5) if "flan" in r["id"]]
    assert art.record_counts == dict(
        zip(("train", "test"), split_counts(len(flan), 0.035, 0.01), strict=True)
    )
    assert art.dropped == {"id_filter": 2000 - len(flan)}
    assert art.source_records == 2000
    assert "does not contain 'flan'" in art.dropped_examples["id_filter"][0].detail

    train = read_jsonl(art.train_uri)
    assert len(train) == art.record_counts["train"]
    by_question = {r["question"]: r for r in flan}
    for row in train:
        roles = [m["role"] for m in row["messages"]]
        assert roles[-2:] == ["user", "assistant"]
        original = by_question[row["messages"][-2]["content"]]
        assert row["messages"][-1]["content"] == original["response"]
        assert (roles[0] == "system") == bool(original["system_prompt"])
    evals = read_jsonl(art.eval_uri or "")
    assert len(evals) == art.record_counts["test"]
    assert {e["category"] for e in evals} == {"flan"}
    assert all(by_question[e["question"]]["response"] == e["answer"] for e in evals)

    again = DatasetArtifact.read(tmp_path / "out")
    assert again == art
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["train_uri"] == TRAIN_FILE


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path, orca_file: Path) -> None:
    kwargs: dict[str, Any] = {"source": str(orca_file), "format": "openorca", "test_size": 0.2}
    a = build(tmp_path, name="a", seed=7, **kwargs)
    b = build(tmp_path, name="b", seed=7, **kwargs)
    c = build(tmp_path, name="c", seed=8, **kwargs)
    for name in (TRAIN_FILE, TEST_FILE, EVAL_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / TRAIN_FILE).read_bytes() != (tmp_path / "c" / TRAIN_FILE).read_bytes()
    assert a.config_hash == b.config_hash != c.config_hash


def test_splits_match_datasets_train_test_split(tmp_path: Path) -> None:
    import datasets

    records = synthetic_qa(200, seed=3)
    art = build(tmp_path, source=records, format="qa", train_size=120, test_size=0.25, seed=11)
    expected = datasets.Dataset.from_list(records).train_test_split(train_size=120, test_size=0.25, seed=11)
    assert [r["question"] for r in read_jsonl(art.eval_uri or "")] == expected["test"]["question"]
    train_questions = [r["messages"][0]["content"] for r in read_jsonl(art.train_uri)]
    assert train_questions == expected["train"]["question"]


@pytest.mark.parametrize(("n", "train", "test"), [(100, None, 0.07), (100, 0.29, 0.1), (1000, 0.035, 0.01)])
def test_split_counts_keep_parity_with_datasets_at_float_edges(
    n: int, train: float | None, test: float
) -> None:
    """0.07 * 100 is 7.000000000000001: datasets (and scikit-learn) take its ceiling, 8, and so do we."""
    import datasets

    expected = datasets.Dataset.from_dict({"x": list(range(n))}).train_test_split(
        train_size=train, test_size=test, seed=0
    )
    assert split_counts(n, train, test) == (len(expected["train"]), len(expected["test"]))
    assert split_counts(100, None, 0.07) == (92, 8)


QA_ROWS = [
    {"question": "What is 2 plus 2?", "answer": "4", "category": "math"},
    {"question": "Capital of Peru?", "answer": "Lima", "category": "geo"},
    {"question": "What is 3 plus 4?", "answer": "7", "category": "math"},
    {"question": "Opposite of up?", "answer": "down", "category": "words"},
]


def _save(tmp_path: Path, kind: str) -> Any:
    import datasets

    if kind == "jsonl":
        return str(write_jsonl(tmp_path / "d.jsonl", QA_ROWS))
    if kind == "json":
        (tmp_path / "d.json").write_text(json.dumps(QA_ROWS, indent=1))
        return str(tmp_path / "d.json")
    if kind == "csv":
        with (tmp_path / "d.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(QA_ROWS[0]))
            writer.writeheader()
            writer.writerows(QA_ROWS)
        return str(tmp_path / "d.csv")
    if kind == "parquet":
        datasets.Dataset.from_list(QA_ROWS).to_parquet(str(tmp_path / "d.parquet"))
        return str(tmp_path / "d.parquet")
    if kind == "hub_layout":  # a dataset repository checked out locally: load_dataset(path), as for a hub id
        (tmp_path / "repo" / "data").mkdir(parents=True)
        write_jsonl(tmp_path / "repo" / "data" / "train-00000.jsonl", QA_ROWS)
        return str(tmp_path / "repo")
    if kind == "save_to_disk":
        datasets.Dataset.from_list(QA_ROWS).save_to_disk(str(tmp_path / "saved"))
        return str(tmp_path / "saved")
    if kind == "dataset":
        return datasets.Dataset.from_list(QA_ROWS)
    if kind == "iterable_dataset":
        return datasets.Dataset.from_list(QA_ROWS).to_iterable_dataset()
    if kind == "list":
        return list(QA_ROWS)
    if kind == "generator":
        return (dict(r) for r in QA_ROWS)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "jsonl",
        "json",
        "csv",
        "parquet",
        "hub_layout",
        "save_to_disk",
        "dataset",
        "iterable_dataset",
        "list",
        "generator",
    ],
)
def test_every_source_kind_gives_the_same_build(tmp_path: Path, kind: str) -> None:
    reference = build(tmp_path, source=list(QA_ROWS), name="ref", format="qa", test_size=1)
    art = build(tmp_path, source=_save(tmp_path, kind), format="qa", test_size=1)
    assert Path(art.train_uri).read_bytes() == Path(reference.train_uri).read_bytes()
    assert Path(art.eval_uri or "").read_bytes() == Path(reference.eval_uri or "").read_bytes()
    assert art.dropped == {}
    # CSV values stay text: the answer "4" is not turned into a number (and then dropped)
    assert {r["answer"] for r in read_jsonl(art.eval_uri or "")} <= {"4", "Lima", "7", "down"}


def test_a_hub_id_goes_through_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_load_dataset(path: str, **kwargs: Any) -> Any:
        calls.append((path, kwargs))
        return datasets.Dataset.from_list(QA_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    art = build(tmp_path, source="some-org/qa-set", format="qa", hub_config="v2", split="train[:50%]")
    assert calls == [("some-org/qa-set", {"name": "v2", "split": "train[:50%]"})]
    assert art.source == "some-org/qa-set [train[:50%]]"
    assert sum(art.record_counts.values()) == 4


@pytest.mark.parametrize(
    ("name", "records"),
    [
        ("alpaca", [{"instruction": f"Say {i}", "input": "", "output": str(i)} for i in range(6)]),
        (
            "sharegpt",
            [
                {"conversations": [{"from": "human", "value": f"Q{i}"}, {"from": "gpt", "value": "A"}]}
                for i in range(6)
            ],
        ),
        (
            "messages",
            [
                {"messages": [{"role": "user", "content": f"Q{i}"}, {"role": "assistant", "content": "A"}]}
                for i in range(6)
            ],
        ),
        ("qa", [{"question": f"Q{i}", "answer": "A", "context": "C"} for i in range(6)]),
        (
            "openorca",
            [{"id": f"t0.{i}", "system_prompt": "", "question": f"Q{i}", "response": "A"} for i in range(6)],
        ),
    ],
)
def test_every_format_builds(tmp_path: Path, name: str, records: list[dict[str, Any]]) -> None:
    art = build(tmp_path, source=records, format=name, test_size=2)
    assert art.format == name
    rows = read_jsonl(art.train_uri) + read_jsonl(art.test_uri or "")
    assert len(rows) == 6
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)
    assert all(r["messages"][-2]["role"] == "user" for r in rows)


def test_bad_records_are_dropped_counted_and_listed(tmp_path: Path) -> None:
    rows: list[Any] = [
        {"id": "flan.0", "question": "Q0", "response": "A0"},
        {"id": "flan.1", "question": "Q1"},  # missing response
        {"id": "flan.2", "question": "Q2", "response": "  \t"},  # whitespace assistant
        {"id": "flan.3", "question": 3, "response": "A3"},  # a number where text belongs
        {"id": "flan.4", "question": "Q0", "response": "A0"},  # exact duplicate of flan.0
        {"id": "flan.5", "question": "Q5", "response": "A5"},
    ]
    source = write_jsonl(tmp_path / "bad.jsonl", rows)
    art = build(tmp_path, source=str(source), format="openorca", test_size=0)
    assert art.dropped == {"duplicate": 1, "empty_assistant": 1, "missing_field": 1, "not_a_string": 1}
    assert art.record_counts == {"train": 2, "test": 0}
    assert art.test_uri is None and art.eval_uri is None
    missing = art.dropped_examples["missing_field"][0]
    assert (missing.index, missing.field) == (1, "response")
    assert "bad.jsonl line 2" in missing.detail
    assert art.dropped_examples["not_a_string"][0].field == "question"


def test_on_invalid_error_stops_with_index_and_field(tmp_path: Path) -> None:
    rows = [{"question": "Q", "answer": "A"}, {"question": "Q2", "answer": "   "}]
    with pytest.raises(DatasetError) as info:
        build(tmp_path, source=str(write_jsonl(tmp_path / "d.jsonl", rows)), format="qa", on_invalid="error")
    assert (info.value.record_index, info.value.field) == (1, "answer")
    assert "d.jsonl line 2" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_invalid_json_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "Q", "answer": "A"}\n\n{"question": "Q2", "answer": \n')
    with pytest.raises(
        DatasetError, match=r"broken\.jsonl: line 3: not valid JSON Lines .*on_invalid='drop'"
    ):
        build(tmp_path, source=str(path), format="qa", on_invalid="error")


def test_a_truncated_last_line_is_dropped_and_counted_under_drop(tmp_path: Path) -> None:
    # The last line of an interrupted download: cut mid-record, no newline.
    rows = [{"question": f"Q{i}?", "answer": f"A{i}"} for i in range(9)]
    path = tmp_path / "cut.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"question": "Q9?", "ans')
    art = build(tmp_path, source=str(path), format="qa", test_size=0)
    assert art.record_counts["train"] == 9
    assert art.source_records == 10 and art.dropped == {"invalid_json": 1}
    (dropped,) = art.dropped_examples["invalid_json"]
    assert dropped.detail.startswith("not valid JSON Lines (") and dropped.detail.endswith(
        "(cut.jsonl line 10)"
    )


def test_filters_id_regex_and_predicate(tmp_path: Path, orca_file: Path) -> None:
    art = DatasetBuilder(
        DatasetConfig(
            output=str(tmp_path / "out"), source=str(orca_file), format="openorca", id_regex=r"^(cot|t0)\."
        ),
        predicate=lambda record: len(record["question"]) < 400,
    ).build()
    kept = read_jsonl(art.train_uri) + read_jsonl(art.test_uri or "")
    assert all(len(r["messages"][-2]["content"]) < 400 for r in kept)
    assert {e["category"] for e in read_jsonl(art.eval_uri or "")} <= {"cot", "t0"}
    assert art.dropped["id_filter"] > 0 and art.dropped["predicate"] > 0
    total = sum(art.record_counts.values()) + sum(art.dropped.values())
    assert total == art.source_records == 2000


def test_a_filter_that_leaves_nothing_is_an_error(tmp_path: Path, orca_file: Path) -> None:
    with pytest.raises(DatasetError, match=r"no records left.*id_filter 2000"):
        build(tmp_path, source=str(orca_file), format="openorca", id_contains="nothing-has-this")


def test_split_sizes_larger_than_the_data_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="but only 4 remain"):
        build(tmp_path, source=list(QA_ROWS), format="qa", train_size=3, test_size=2)
    assert not (tmp_path / "out").exists()


def test_missing_source_file_and_no_source(tmp_path: Path) -> None:
    import datasets

    with pytest.raises(DatasetError, match=r"no such file"):
        build(tmp_path, source=str(tmp_path / "nope.jsonl"), format="qa")
    with pytest.raises(DatasetError, match="no source"):
        build(tmp_path, format="qa")
    whole = datasets.DatasetDict({"train": datasets.Dataset.from_list(QA_ROWS)})
    with pytest.raises(DatasetError, match=r"pick a split, e\.g\. source=ds\['train'\]"):
        build(tmp_path, source=whole, format="qa")


def test_a_previous_build_is_refused_unless_overwrite(tmp_path: Path) -> None:
    first = build(tmp_path, source=list(QA_ROWS), format="qa", test_size=1)
    before = Path(first.train_uri).read_bytes()
    with pytest.raises(DatasetError, match=r"holds a previous build.*overwrite=True"):
        build(tmp_path, source=synthetic_qa(10), format="qa")
    assert Path(first.train_uri).read_bytes() == before
    second = build(tmp_path, source=synthetic_qa(10), format="qa", test_size=0, overwrite=True)
    assert second.record_counts == {"train": 10, "test": 0}
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["manifest.json", TRAIN_FILE]  # the old test and eval files are gone with the old build
    assert DatasetArtifact.read(tmp_path / "out").test_uri is None


def test_an_interrupted_overwrite_leaves_the_previous_build_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bedrock_ft.data import _builder as builder

    build(tmp_path, source=list(QA_ROWS), format="qa", test_size=1)
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = 0

    def explode_on_the_second_split(fh: Any, rows: Iterator[dict[str, Any]]) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return write_jsonl_rows(fh, rows)  # the train split is complete...
        fh.write(b'{"messages": [')  # ...the test split is half written when the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(builder, "write_jsonl", explode_on_the_second_split)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, source=synthetic_qa(10), format="qa", test_size=2, overwrite=True)
    # nothing was published: the old build, manifest included, is exactly as it was; no temp is left
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_crash_while_publishing_leaves_no_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from bedrock_ft.data import _writers as writers

    build(tmp_path, source=list(QA_ROWS), format="qa", test_size=1)

    class SecondRenameFails:
        renames = 0

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        def replace(self, src: Any, dst: Any) -> None:
            self.renames += 1
            if self.renames == 2:
                raise OSError("disk gone")
            os.replace(src, dst)

    monkeypatch.setattr(writers, "os", SecondRenameFails())
    with pytest.raises(OSError, match="disk gone"):
        build(tmp_path, source=synthetic_qa(10), format="qa", test_size=2, overwrite=True)
    out = tmp_path / "out"
    assert not (out / "manifest.json").exists()  # a mix of old and new files is never called a build
    assert sorted(p.name for p in out.iterdir()) == sorted([TRAIN_FILE, TEST_FILE, EVAL_FILE])


def test_mixed_types_in_a_jsonl_column_are_counted_not_fatal(tmp_path: Path) -> None:
    rows = [{"question": f"Q{i}", "answer": str(i) if i % 3 else i} for i in range(9)]
    art = build(tmp_path, source=str(write_jsonl(tmp_path / "mixed.jsonl", rows)), format="qa", test_size=0)
    assert art.dropped == {"not_a_string": 3}
    assert art.record_counts["train"] == 6


def test_system_prompt_and_text_column_with_a_builtin_template(tmp_path: Path) -> None:
    art = build(
        tmp_path,
        source=list(QA_ROWS),
        format="qa",
        test_size=0,
        system_prompt="Answer in one word.",
        chat_template="human_assistant",
        text_column=True,
    )
    row = read_jsonl(art.train_uri)[0]
    assert row["messages"][0] == {"role": "system", "content": "Answer in one word."}
    user, answer = row["messages"][1]["content"], row["messages"][2]["content"]
    assert row["text"] == f"Answer in one word.\n\nHuman: {user}</s>\n\nAssistant: {answer}</s>"
    assert art.chat_template_name == "human_assistant"
    assert art.text_column is True
    assert art.token_stats is None  # no tokenizer, no token counts
