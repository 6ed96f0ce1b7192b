"""Evaluator: fmeval's QA accuracy for one model, or several on the same records with the differences
and their confidence intervals."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import EvaluationError
from bedrock_ft.evaluation._config import EvalConfig
from bedrock_ft.evaluation._data import load_records, source_name
from bedrock_ft.progress import Progress, quiet, show_bar

if TYPE_CHECKING:
    from bedrock_ft.artifacts import DatasetArtifact, EvaluationReport
    from bedrock_ft.evaluation._comparison import ComparisonReport

__all__ = ["Evaluator"]

log = logging.getLogger("bedrock_ft")


class Evaluator:
    """Scores models with fmeval's QA-accuracy metrics.

    ``target``: an :class:`~bedrock_ft.ImportedModelClient`, or any callable mapping a prompt to text.
    ``dataset``: a :class:`~bedrock_ft.DatasetArtifact`, its manifest or directory (its fmeval-ready test
    file), or a JSON Lines file (local or ``s3://``) whose fields are found at the config's locations.
    ``progress`` receives one line per step; ``progress_bar`` shows the answers as they come (None:
    ``EvalConfig.progress_bar`` if set, else when stderr is a terminal).
    """

    def __init__(
        self,
        config: EvalConfig | None = None,
        *,
        progress: Progress | None = None,
        progress_bar: bool | None = None,
    ) -> None:
        config = config or EvalConfig()
        bar = show_bar(progress_bar if progress_bar is not None else config.progress_bar)
        # the engines read the resolved switch from the config (it is not part of its hash)
        self.config = config.model_copy(update={"progress_bar": bar})
        self._say: Progress = progress or quiet

    def evaluate(
        self, target: Any, dataset: DatasetArtifact | str | Path, *, name: str = "model"
    ) -> EvaluationReport:
        """Score one target; returns its report (and writes the report files when ``output_dir`` is set)."""
        return self.evaluate_many({name: target}, dataset).reports[name]

    def evaluate_many(
        self,
        targets: Mapping[str, Any],
        dataset: DatasetArtifact | str | Path,
        *,
        baseline: str | None = None,
    ) -> ComparisonReport:
        """Score several targets on the same records. Each one after ``baseline`` (default: the first) is
        compared with it: the mean difference of every metric and its paired-bootstrap interval."""
        from bedrock_ft._deps import require
        from bedrock_ft.evaluation._comparison import ComparisonReport
        from bedrock_ft.evaluation._engines import Scorer
        from bedrock_ft.evaluation._stats import paired_bootstrap
        from bedrock_ft.evaluation._target import TargetAdapter

        cfg = self.config
        needed = ["fmeval", "numpy"] + (["matplotlib"] if cfg.output_dir else [])
        require(*needed, extra="eval", feature="Evaluator")  # before any model call is paid for
        if not targets:
            raise EvaluationError("evaluate_many() needs at least one target")
        base = baseline if baseline is not None else next(iter(targets))
        if base not in targets:
            raise EvaluationError(f"baseline {base!r} is not one of the targets {sorted(targets)}")
        adapters = {name: TargetAdapter(target, cfg) for name, target in targets.items()}  # bad targets: now
        uri, records = load_records(dataset, cfg)
        dataset_name = cfg.dataset_name or source_name(uri)
        self._say(
            f"evaluating {len(adapters)} model(s) on {len(records)} records of {dataset_name} ({cfg.engine})"
        )
        scorer = Scorer(cfg)
        reports: dict[str, EvaluationReport] = {}
        rows: dict[str, list[dict[str, Any]]] = {}
        try:
            for name, adapter in adapters.items():
                reports[name], rows[name] = self._one(
                    name, adapter, records=records, scorer=scorer, uri=uri, dataset_name=dataset_name
                )
        finally:
            if cfg.engine == "fmeval":  # Ray's processes hold GiBs: not kept past the evaluation
                from bedrock_ft.evaluation._fmeval_compat import stop_ray

                stop_ray()
        deltas: dict[str, dict[str, dict[str, Any]]] = {}
        for name in list(reports):
            if name == base:
                continue
            deltas[name] = paired_bootstrap(
                [r["scores"] for r in rows[base]],
                [r["scores"] for r in rows[name]],
                scorer.names,
                samples=cfg.bootstrap_samples,
                confidence=cfg.confidence,
                seed=cfg.seed,
            )
            compared = {"name": base, "model_id": reports[base].model_id, "deltas": deltas[name]}
            updated = reports[name].model_copy(update={"baseline": compared})
            updated._rows = rows[name]
            reports[name] = updated
        comparison = ComparisonReport(
            dataset=dataset_name,
            dataset_uri=uri,
            baseline=base,
            reports=reports,
            deltas=deltas,
            confidence=cfg.confidence,
        )
        if cfg.output_dir:
            from bedrock_ft.evaluation._report import write_reports

            files = write_reports(cfg.output_dir, comparison, rows, cfg.worst_examples)
            comparison = comparison.model_copy(update={"files": files})
            self._say(f"report: {files['html']}")
        return comparison

    def _one(
        self, name: str, adapter: Any, *, records: Any, scorer: Any, uri: str, dataset_name: str
    ) -> tuple[EvaluationReport, list[dict[str, Any]]]:
        """One target through the engine: its rows and its report."""
        from bedrock_ft.artifacts import EvaluationReport
        from bedrock_ft.evaluation._engines import run_engine
        from bedrock_ft.evaluation._stats import aggregate

        cfg = self.config
        self._say(f"{name}: asking {adapter.model_id}")
        started = time.perf_counter()
        got, timings, fmeval_scores = run_engine(adapter, records, cfg, scorer, dataset_name)
        timings["total_s"] = time.perf_counter() - started
        errors = sum(1 for r in got if r["error"] is not None)
        if errors == len(got):
            log.error("%s failed on every record: nothing was scored (see records.jsonl)", name)
        elif errors:
            first = next(r for r in got if r["error"] is not None)
            log.warning(
                "%s failed on %d of %d records (kept as errors, not scored); first, line %d: %s",
                name, errors, len(got), first["line"], first["error"],
            )  # fmt: skip
        report = EvaluationReport(
            model_id=adapter.model_id,
            name=name,
            dataset=dataset_name,
            dataset_uri=uri,
            engine=cfg.engine,
            metrics=aggregate(got, scorer.names, dataset_name),
            records_uri=str(Path(cfg.output_dir, "records.jsonl")) if cfg.output_dir else None,
            record_count=len(got) - errors,
            error_count=errors,
            prompt_template=adapter.template,
            timings={k: round(v, 3) for k, v in timings.items()},
            fmeval_scores=fmeval_scores,
            config=cfg.model_dump(mode="json", exclude={"aws"}),
        )
        report._rows = got
        return report, got
