"""The two engines. Both score with fmeval's own QA-accuracy definitions (``QAAccuracy``'s per-record
pipeline), so the same outputs get the same scores:

- ``fast``: the model answers through ``ImportedModelClient.batch_complete`` (``max_concurrency`` at once),
  then each record is scored in-process with ``QAAccuracy.evaluate_sample``. No Ray.
- ``fmeval``: fmeval's own ``QAAccuracy().evaluate(model=..., dataset_config=DataConfig(...),
  prompt_template=...)``, unchanged, with :class:`ImportedModelRunner` as its ``ModelRunner``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import EvaluationError
from bedrock_ft.evaluation import _fmeval_compat as compat

if TYPE_CHECKING:
    from bedrock_ft.evaluation._config import EvalConfig
    from bedrock_ft.evaluation._data import EvalRecord
    from bedrock_ft.evaluation._target import TargetAdapter

__all__ = ["ERROR_MARK", "METRICS", "Scorer", "run_engine"]

log = logging.getLogger("bedrock_ft")

METRICS = (
    "exact_match_score",
    "quasi_exact_match_score",
    "f1_score",
    "precision_over_words",
    "recall_over_words",
)
"""fmeval's QAAccuracy metrics, in its order (BERTScore is added when enabled)."""

FMEVAL_MAX_RECORDS = 100_000
"""fmeval samples from the first 100,000 records only."""

ERROR_MARK = "\x00bedrock-ft-error\x00"
"""What the fmeval engine's ModelRunner answers for a failed call, so the record is found and kept as an
error instead of being scored as a wrong answer."""


class Scorer:
    """fmeval's QAAccuracy, per record (its ``evaluate_sample``: the same pipeline ``evaluate`` runs)."""

    def __init__(self, config: EvalConfig) -> None:
        if config.bertscore:
            compat.check_bertscore(config.bertscore_model)
        self.bertscore = config.bertscore
        self.algorithm = compat.make_qa_accuracy(
            config.target_delimiter, config.bertscore_model, config.bertscore
        )
        self.names: tuple[str, ...] = (*METRICS, "bertscore") if config.bertscore else METRICS

    def score(self, target: str, output: str) -> dict[str, float]:
        values = {s.name: s.value for s in self.algorithm.evaluate_sample(target, output)}
        return {name: float(values[name]) for name in self.names}


def _row(record: EvalRecord, prompt: str, output: str | None, error: str | None) -> dict[str, Any]:
    return {
        "index": record.index,
        "line": record.line,
        "category": record.category,
        "question": record.question,
        "prompt": prompt,
        "target": record.target,
        "output": output,
        "error": error,
        "scores": None,
    }


def run_fast(
    adapter: TargetAdapter, records: Sequence[EvalRecord], scorer: Scorer, label: str
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    prompts = [adapter.prompt(r) for r in records]
    started = time.perf_counter()
    answers = adapter.answer_all(prompts, label)
    invoked = time.perf_counter()
    rows = []
    for record, prompt, answer in zip(records, prompts, answers, strict=True):
        row = _row(record, prompt, answer.text, answer.error)
        row["latency_s"] = None if answer.latency_s is None else round(answer.latency_s, 4)
        row["cached"] = answer.cached
        if answer.error is None and answer.text is not None:
            row["scores"] = scorer.score(record.target, answer.text)
        rows.append(row)
    return rows, {"invoke_s": invoked - started, "score_s": time.perf_counter() - invoked}


def run_fmeval(
    adapter: TargetAdapter, records: Sequence[EvalRecord], scorer: Scorer, dataset_name: str
) -> tuple[list[dict[str, Any]], dict[str, float], dict[str, Any]]:
    """fmeval's ``QAAccuracy().evaluate`` on the records; returns rows in record order, timings and
    fmeval's own aggregate scores."""
    if len(records) > FMEVAL_MAX_RECORDS:
        raise EvaluationError(
            f"fmeval's evaluate() reads at most {FMEVAL_MAX_RECORDS:,} records, and this dataset has "
            f"{len(records):,}; use engine='fast', or max_records"
        )
    if adapter.config.prompt_template is None and adapter.is_client:
        for r in records:  # fmeval fills in one fixed template: it must be what training rendered
            if adapter.fill(r.question) != adapter.prompt(r):
                why = "has a system message" if r.system else "is changed by the chat template (trimmed?)"
                raise EvaluationError(
                    f"line {r.line}: the record {why}, so fmeval's one fixed prompt template can't ask it "
                    "as training did; use engine='fast' (or, for system messages, system_location=None / "
                    "--system-field '')"
                )
    started = time.perf_counter()
    compat.start_ray(bertscore=scorer.bertscore, progress_bars=bool(adapter.config.progress_bar))
    from fmeval.constants import MIME_TYPE_JSONLINES
    from fmeval.data_loaders.data_config import DataConfig
    from fmeval.eval_algorithms.save_strategy import FileSaveStrategy

    from bedrock_ft.evaluation._runner import ImportedModelRunner

    with_categories = all(r.category is not None for r in records)
    with tempfile.TemporaryDirectory(prefix="bedrock-ft-fmeval-") as tmp:
        data = Path(tmp, "dataset.jsonl")
        with data.open("w", encoding="utf-8") as fh:
            for r in records:
                row = {"question": r.question, "answer": r.target}
                if with_categories and r.category is not None:
                    row["category"] = r.category
                fh.write(json.dumps(row) + "\n")
        config = DataConfig(
            dataset_name=dataset_name,
            dataset_uri=str(data),
            dataset_mime_type=MIME_TYPE_JSONLINES,
            model_input_location="question",
            target_output_location="answer",
            category_location="category" if with_categories else None,
        )
        out = Path(tmp, "records.jsonl")
        evaluated = time.perf_counter()
        outputs = scorer.algorithm.evaluate(
            model=ImportedModelRunner(adapter),
            dataset_config=config,
            prompt_template=adapter.template,
            num_records=len(records),
            save=True,
            save_strategy=FileSaveStrategy(str(out)),
        )
        done = time.perf_counter()
        saved = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = _match(records, saved, scorer.names)
    own = outputs[0]
    kept = set(scorer.names)  # without BERTScore, fmeval's bertscore is the compat's placeholder
    fmeval_scores = {
        "dataset_scores": {s.name: s.value for s in own.dataset_scores or () if s.name in kept},
        "category_scores": {
            c.name: {s.name: s.value for s in c.scores if s.name in kept} for c in own.category_scores or ()
        },
    }
    timings = {"setup_s": evaluated - started, "evaluate_s": done - evaluated}
    return rows, timings, fmeval_scores


def _match(
    records: Sequence[EvalRecord], saved: list[dict[str, Any]], names: Sequence[str]
) -> list[dict[str, Any]]:
    """fmeval's output rows come back shuffled: give each to its record, by question and target."""
    queues: dict[tuple[str, str], deque[dict[str, Any]]] = defaultdict(deque)
    for row in saved:
        queues[(row["model_input"], row["target_output"])].append(row)
    rows = []
    for record in records:
        queue = queues.get((record.question, record.target))
        if not queue:
            raise EvaluationError(f"fmeval returned no result for line {record.line} ({record.question!r})")
        got = queue.popleft()
        output = str(got.get("model_output") or "")
        error = output[len(ERROR_MARK) :] if output.startswith(ERROR_MARK) else None
        row = _row(record, str(got.get("prompt", "")), None if error else output, error)
        if error is None:
            scores = {s["name"]: s["value"] for s in got.get("scores", ())}
            row["scores"] = {n: float(scores[n]) for n in names if n in scores}
        rows.append(row)
    return rows


def run_engine(
    adapter: TargetAdapter,
    records: Sequence[EvalRecord],
    config: EvalConfig,
    scorer: Scorer,
    dataset_name: str,
) -> tuple[list[dict[str, Any]], dict[str, float], dict[str, Any] | None]:
    if config.engine == "fmeval":
        return run_fmeval(adapter, records, scorer, dataset_name)
    rows, timings = run_fast(adapter, records, scorer, label=f"evaluating {adapter.model_id[-40:]}")
    return rows, timings, None
