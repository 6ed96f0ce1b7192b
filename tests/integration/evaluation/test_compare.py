"""Comparisons and their bootstrap intervals, the report files, and failures kept as errors (fast engine,
with plain callables as targets)."""

from __future__ import annotations

import base64
import json
import math
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bedrock_ft import EvalConfig, EvaluationError, Evaluator

pytestmark = pytest.mark.slow

N = 80


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rows = [
        {
            "question": f"What is {i} plus 1?",
            "answer": str(i + 1),
            "category": "even" if i % 2 == 0 else "odd",
        }
        for i in range(N)
    ]
    path = tmp_path / "plus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _number(prompt: str) -> int:
    return int(re.findall(r"\d+", prompt)[0])


def right_on(share: float, seed: int) -> Callable[[str], str]:
    """A model that answers right on about ``share`` of the questions (the same ones every time)."""
    rng = random.Random(seed)
    right = {i for i in range(N) if rng.random() < share}
    return lambda prompt: str(_number(prompt) + 1) if _number(prompt) in right else "I am not sure."


def test_comparison_reports_deltas_with_intervals(dataset: Path) -> None:
    config = EvalConfig(progress_bar=False, bootstrap_samples=4000)
    targets = {"base": right_on(0.2, 1), "fine-tuned": right_on(0.8, 2)}
    comparison = Evaluator(config).evaluate_many(targets, dataset)
    base, tuned = comparison["base"], comparison["fine-tuned"]
    assert comparison.baseline == "base" and list(comparison.deltas) == ["fine-tuned"]
    d = comparison.delta("fine-tuned", "exact_match_score")
    # The delta is the difference of the two means over the same records.
    expected = tuned.scores["exact_match_score"] - base.scores["exact_match_score"]
    assert d["delta"] == pytest.approx(expected) and d["records"] == N
    assert d["ci_low"] < d["delta"] < d["ci_high"]
    assert d["ci_low"] > 0 and d["significant"]
    # The interval's width is what the paired differences' spread says (normal approximation).
    diffs = [
        b["scores"]["exact_match_score"] - a["scores"]["exact_match_score"]
        for a, b in zip(base.records(), tuned.records(), strict=True)
    ]
    mean = sum(diffs) / N
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / (N - 1))
    assert d["ci_high"] - d["ci_low"] == pytest.approx(2 * 1.96 * sd / math.sqrt(N), rel=0.2)
    # Each compared report carries its comparison; the baseline's does not.
    assert tuned.baseline is not None and tuned.baseline["name"] == "base"
    assert tuned.baseline["deltas"]["exact_match_score"] == d and base.baseline is None
    # Reproducible: the same seed gives the same interval.
    again = Evaluator(config).evaluate_many(targets, dataset)
    assert again.delta("fine-tuned") == d
    lines = comparison.summary()
    assert lines[0].startswith("base: exact match ") and any("95% CI" in line for line in lines)


def test_same_model_twice_is_no_difference(dataset: Path) -> None:
    model = right_on(0.5, 3)
    comparison = Evaluator(EvalConfig(progress_bar=False)).evaluate_many({"a": model, "b": model}, dataset)
    for metric, d in comparison.deltas["b"].items():
        assert (d["delta"], d["ci_low"], d["ci_high"], d["significant"]) == (0.0, 0.0, 0.0, False), metric


def test_baseline_must_be_a_target(dataset: Path) -> None:
    with pytest.raises(EvaluationError, match="baseline 'c' is not one of the targets"):
        Evaluator().evaluate_many({"a": str, "b": str}, dataset, baseline="c")
    with pytest.raises(EvaluationError, match="at least one target"):
        Evaluator().evaluate_many({}, dataset)


def test_report_files(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    config = EvalConfig(progress_bar=False, output_dir=str(out), worst_examples=3)
    comparison = Evaluator(config).evaluate_many(
        {"base": right_on(0.3, 4), "tuned": right_on(0.9, 5)}, dataset
    )
    assert comparison.files["html"] == str(out / "report.html")
    data = json.loads((out / "report.json").read_text())
    assert data["baseline"] == "base" and set(data["reports"]) == {"base", "tuned"}
    tuned = data["reports"]["tuned"]
    assert tuned["metrics"]["plus"]["exact_match_score"] == comparison["tuned"].scores["exact_match_score"]
    assert set(tuned["metrics"]) == {"plus", "plus/even", "plus/odd"}  # per dataset and category
    assert tuned["config"]["engine"] == "fast" and tuned["timings"]["total_s"] > 0
    assert tuned["model_id"] and data["deltas"]["tuned"]["f1_score"]["ci_low"] is not None
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 * N
    first = records[0]
    assert {"model", "prompt", "target", "output", "scores", "error", "line"} <= set(first)
    assert first["model"] == "base" and first["target"] == "1" and first["prompt"] == "What is 0 plus 1?"
    # The report's records reader gives one model's rows back.
    assert len(comparison["tuned"].records()) == N
    # The plot: a PNG file, and the same bytes embedded in the HTML.
    png = (out / "metrics.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    html = (out / "report.html").read_text()
    embedded = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert embedded and base64.b64decode(embedded.group(1)) == png
    assert "worst-scoring records" in html and "I am not sure." in html  # a wrong answer is shown
    markdown = (out / "report.md").read_text()
    assert "| tuned - base | exact match |" in markdown and "## tuned: per category" in markdown


def test_failures_are_kept_counted_and_not_scored(dataset: Path, tmp_path: Path) -> None:
    def flaky(prompt: str) -> str:
        n = _number(prompt)
        if n % 10 == 0:
            raise TimeoutError(f"no answer for {n}")
        return str(n + 1)

    out = tmp_path / "report"
    report = Evaluator(EvalConfig(progress_bar=False, output_dir=str(out))).evaluate(
        flaky, dataset, name="flaky"
    )
    assert (report.record_count, report.error_count) == (N - 8, 8)
    # The others were all right: a failure is not a zero in the mean.
    assert report.scores["exact_match_score"] == 1.0
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    failed = [r for r in rows if r["error"] is not None]
    assert len(failed) == 8 and all(r["scores"] is None and r["output"] is None for r in failed)
    assert "no answer for 0" in failed[0]["error"]
    html = (out / "report.html").read_text()
    assert "ERROR: " in html  # failures come first among the worst examples
    data = json.loads((out / "report.json").read_text())
    assert data["reports"]["flaky"]["error_count"] == 8


def test_dataset_read_from_s3(moto_endpoint: str, aws_credentials: None) -> None:
    from bedrock_ft import AwsConfig, DatasetError

    aws = AwsConfig(endpoint_urls={"s3": moto_endpoint})
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="eval-data")
    rows = [{"question": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(5)]
    s3.put_object(Bucket="eval-data", Key="qa/eval.jsonl", Body="".join(json.dumps(r) + "\n" for r in rows))
    config = EvalConfig(progress_bar=False, aws=aws)
    report = Evaluator(config).evaluate(lambda p: str(_number(p) + 1), "s3://eval-data/qa/eval.jsonl")
    assert report.dataset_uri == "s3://eval-data/qa/eval.jsonl" and report.dataset == "eval"
    assert report.record_count == 5 and report.scores["exact_match_score"] == 1.0
    with pytest.raises(DatasetError, match="no such dataset file"):
        Evaluator(config).evaluate(str, "s3://eval-data/qa/missing.jsonl")


def test_a_model_that_failed_everywhere(dataset: Path, tmp_path: Path) -> None:
    def down(prompt: str) -> str:
        raise ConnectionError("unreachable")

    out = tmp_path / "report"
    config = EvalConfig(progress_bar=False, output_dir=str(out))
    comparison = Evaluator(config).evaluate_many({"down": down, "up": right_on(0.5, 6)}, dataset)
    down_report = comparison["down"]
    assert (down_report.record_count, down_report.error_count) == (0, N)
    assert set(down_report.scores.values()) == {None}  # not zeros: nothing was scored
    assert comparison.deltas == {"up": {}}  # no record both answered: nothing to compare
    assert (
        comparison.summary()[0] == f"down: exact match n/a, quasi-exact n/a, F1 n/a (0 records, {N} errors)"
    )
    data = json.loads((out / "report.json").read_text())  # strict JSON, and it loads back
    from bedrock_ft.evaluation import ComparisonReport

    assert ComparisonReport.model_validate(data)["down"].scores["f1_score"] is None
    json.loads(comparison.model_dump_json())
