"""The Evaluator on a model imported into the local Bedrock: an ImportedModelClient through both
engines (fmeval's ModelRunner rebuilds the client in each Ray worker), and `bedrock-ft evaluate`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bedrock_ft import (
    EvalConfig,
    EvaluationError,
    Evaluator,
    ImportedModel,
    ImportedModelClient,
    InvokeConfig,
)
from bedrock_ft.data import synthetic_qa
from bedrock_ft.local import LocalStack

pytestmark = pytest.mark.slow

RunCli = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="session")
def served(embedded_service: tuple[LocalStack, ImportedModel]) -> tuple[LocalStack, ImportedModel]:
    return embedded_service


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in synthetic_qa(6, seed=7)))
    return path


def test_both_engines_ask_the_imported_model_the_same_and_score_it_the_same(
    served: tuple[LocalStack, ImportedModel], dataset: Path, aws_credentials: None, fmeval_session: None
) -> None:
    stack, imported = served
    client = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config()))
    # Categories are left out here: fmeval aggregates each one in a Ray job of its own (slow); both
    # engines' per-category scores are compared in test_engines.
    config = EvalConfig(max_tokens=16, progress_bar=False, category_location=None)
    fast = Evaluator(config).evaluate(client, dataset)
    own = Evaluator(config.replace(engine="fmeval")).evaluate(client, dataset)
    assert fast.model_id == own.model_id == imported.model_arn
    assert fast.error_count == own.error_count == 0 and fast.record_count == 6
    fast_rows, own_rows = fast.records(), own.records()
    # The prompt is the model's training chat template around the question, in both engines.
    assert fast.prompt_template == own.prompt_template
    assert fast.prompt_template is not None and "$model_input" in fast.prompt_template
    for a, b in zip(fast_rows, own_rows, strict=True):
        assert a["prompt"] == b["prompt"] == client.render_chat([{"role": "user", "content": a["question"]}])
        assert a["output"] == b["output"]  # greedy: the same answers
        assert a["scores"] == b["scores"]
    assert own.metrics == fast.metrics
    assert client.usage.requests >= 6  # the fast engine went through this client


def test_a_stopped_evaluation_resumes_without_asking_again(
    served: tuple[LocalStack, ImportedModel], dataset: Path, tmp_path: Path, aws_credentials: None
) -> None:
    stack, imported = served
    config = EvalConfig(max_tokens=16, progress_bar=False, output_dir=str(tmp_path / "report"))
    client = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config()))
    first = Evaluator(config).evaluate(client, dataset)
    answers = tmp_path / "report" / "answers.jsonl"
    kept = answers.read_text().splitlines()
    assert len(kept) == 6 and client.usage.requests == 6
    # As if the first run had stopped after three answers, the last one cut short mid-line.
    answers.write_text("\n".join(kept[:3]) + "\n" + kept[3][:20])
    again = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config()))
    second = Evaluator(config).evaluate(again, dataset)
    assert again.usage.requests == 3  # only the answers not kept were asked again
    assert sorted(r["cached"] for r in second.records()) == [False] * 3 + [True] * 3
    assert [r["output"] for r in second.records()] == [r["output"] for r in first.records()]
    assert second.metrics == first.metrics
    lines = answers.read_text().splitlines()  # the cut line is gone, and every answer is whole again
    assert len(lines) == 6 and all(json.loads(line)["text"] is not None for line in lines)
    # Other settings are other answers: nothing is reused.
    third = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config()))
    Evaluator(config.replace(max_tokens=8)).evaluate(third, dataset)
    assert third.usage.requests == 6


def test_cli_evaluate_compares_two_models(
    served: tuple[LocalStack, ImportedModel],
    dataset: Path,
    tmp_path: Path,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack, imported = served
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    manifest = imported.write(tmp_path / "imported")
    out = tmp_path / "report"
    code, stdout, err = run_cli(
        "evaluate", "--model", str(imported.model_arn), "--baseline", str(manifest),
        "--dataset", str(dataset), "--output", str(out), "--max-tokens", "16", "--json", "--no-resume",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(stdout)
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert not any(r["cached"] for r in rows)  # both asked: the comparison below is a real one
    assert list(result["reports"]) == ["baseline", "model"]
    assert result["reports"]["model"]["model_id"] == imported.model_arn
    # The same model (by ARN, and by manifest) answers the same: no difference, an interval of zero.
    assert result["deltas"]["model"]["exact_match_score"]["delta"] == 0.0
    assert (out / "report.html").is_file() and len((out / "records.jsonl").read_text().splitlines()) == 12
    # Human output, and a bad dataset: one line naming the field and line.
    code, stdout, err = run_cli(
        "evaluate", "--model", str(manifest), "--dataset", str(dataset), "--output", str(out)
    )
    assert code == 0, err
    assert stdout.startswith("model: exact match ") and "report.html" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q?", "answer": "a"}\n{"question": "r?"}\n')
    code, _, err = run_cli("evaluate", "--model", str(manifest), "--dataset", str(bad), "--output", str(out))
    assert code == 1 and "line 2: no target at 'answer'" in err
    code, _, err = run_cli("evaluate", "--model", str(manifest), "--dataset", str(bad), "--engine", "ray")
    assert code == 1 and "engine" in err


def test_fmeval_engine_refuses_what_its_fixed_template_cannot_ask(
    served: tuple[LocalStack, ImportedModel], tmp_path: Path, aws_credentials: None
) -> None:
    stack, imported = served
    client = ImportedModelClient(imported, InvokeConfig(aws=stack.aws_config()))
    path = tmp_path / "system.jsonl"
    rows = [{"question": "a?", "answer": "a"}, {"question": "b?", "answer": "b", "system": "Be terse."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = EvalConfig(engine="fmeval", progress_bar=False)
    with pytest.raises(EvaluationError, match="line 2: the record has a system message"):
        Evaluator(config).evaluate(client, path)
    assert client.usage.requests == 0  # refused before asking anything
