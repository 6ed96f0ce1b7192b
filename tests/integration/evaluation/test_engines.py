"""Both engines score with fmeval's own QA-accuracy definitions: hand-computed cases for exact match,
quasi-exact match, F1, precision and recall (``<OR>`` alternatives included), the same per-record and
aggregate scores from the fast engine and from fmeval's own ``QAAccuracy().evaluate`` (Ray), and a failed
record kept as an error by both."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bedrock_ft import EvalConfig, Evaluator

pytestmark = pytest.mark.slow

# question -> (target, the model's output, expected exact match, quasi-exact, F1, precision, recall)
CASES: dict[str, tuple[str, str, float, float, float, float, float]] = {
    "Capital of France?": ("Paris", "Paris", 1, 1, 1, 1, 1),
    "Capital of France, in lower case?": ("Paris", "paris.", 0, 1, 1, 1, 1),  # case and punctuation
    "The famous tower?": ("The Eiffel Tower", "Eiffel Tower", 0, 1, 1, 1, 1),  # articles dropped
    "Capital of Germany?": ("Berlin", "It is Berlin", 0, 0, 0.5, 1 / 3, 1),  # 1 of 3 words
    "Another name for the UK?": ("UK<OR>United Kingdom", "United Kingdom", 1, 1, 1, 1, 1),  # an alternative
    "The Big Apple?": ("New York City<OR>NYC", "New York", 0, 0, 0.8, 1, 2 / 3),  # best alternative
    "Capital of Italy?": ("Rome", "", 0, 0, 0, 0, 0),  # an empty answer scores zero
}
FAILS = "Capital of Spain?"  # the model fails on this one
NAMES = (
    "exact_match_score",
    "quasi_exact_match_score",
    "f1_score",
    "precision_over_words",
    "recall_over_words",
)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rows = [
        {"question": q, "answer": target, "category": "geo" if i < 4 else "other"}
        for i, (q, (target, *_)) in enumerate(CASES.items())
    ]
    rows.append({"question": FAILS, "answer": "Madrid", "category": "other"})
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _model() -> Callable[[str], str]:
    outputs = {q: case[1] for q, case in CASES.items()}  # captured by value: it travels to Ray workers

    def answer(prompt: str) -> str:
        if prompt == FAILS:
            raise RuntimeError("the model is down")
        return outputs[prompt]

    return answer


def _check_hand_computed(rows: list[dict[str, object]]) -> None:
    for row in rows:
        if row["question"] == FAILS:
            assert row["scores"] is None and row["output"] is None
            assert "the model is down" in str(row["error"])
            continue
        expected = dict(zip(NAMES, CASES[str(row["question"])][2:], strict=True))
        assert row["error"] is None
        scores = row["scores"]
        assert isinstance(scores, dict)
        assert scores == pytest.approx(expected), row["question"]


def test_fast_and_fmeval_engines_agree_with_hand_computed_scores(
    dataset: Path, tmp_path: Path, aws_credentials: None, fmeval_session: None
) -> None:
    model = _model()
    fast = Evaluator(EvalConfig(progress_bar=False)).evaluate(model, dataset)
    own = Evaluator(EvalConfig(engine="fmeval", progress_bar=False)).evaluate(model, dataset)
    import ray

    # Inside fmeval_ray() the evaluation reuses the session's Ray and leaves it running (outside it, an
    # evaluation shuts down the Ray it started: fmeval_session's teardown checks that shutdown).
    assert ray.is_initialized()
    assert (fast.engine, own.engine) == ("fast", "fmeval")
    fast_rows, own_rows = fast.records(), own.records()
    _check_hand_computed(fast_rows)
    _check_hand_computed(own_rows)
    assert [r["scores"] for r in fast_rows] == [r["scores"] for r in own_rows]
    assert [r["prompt"] for r in own_rows] == [r["question"] for r in own_rows]  # fmeval composed them
    # Aggregates: the mean over the 7 answered records; the failure is counted, not scored as zero.
    for report in (fast, own):
        assert (report.record_count, report.error_count) == (7, 1)
        assert report.scores["exact_match_score"] == pytest.approx(2 / 7)
        assert report.scores["quasi_exact_match_score"] == pytest.approx(4 / 7)
        assert report.scores["f1_score"] == pytest.approx(5.3 / 7)
        assert report.metrics["cases/geo"]["exact_match_score"] == pytest.approx(1 / 4)
        assert report.metrics["cases/other"]["f1_score"] == pytest.approx(1.8 / 3)
        assert "bertscore" not in report.scores  # opt-in, and unavailable offline
    assert own.metrics == fast.metrics
    # fmeval's own aggregate, also kept, scored the failure as a wrong answer (8 records): ours did not.
    assert own.fmeval_scores is not None
    assert own.fmeval_scores["dataset_scores"]["f1_score"] == pytest.approx(5.3 / 8)
    assert set(own.fmeval_scores["dataset_scores"]) == set(NAMES)
    assert own.timings["evaluate_s"] > 0 and fast.timings["invoke_s"] > 0
