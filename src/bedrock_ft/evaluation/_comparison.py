"""The result of comparing models on the same records: one EvaluationReport each, and the differences
from the baseline with their confidence intervals."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bedrock_ft.artifacts import EvaluationReport

__all__ = ["ComparisonReport", "EvaluationReport"]


def fmt(value: float | None) -> str:
    """A score with three decimals, or "n/a" where no record was scored (None, or NaN)."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


class ComparisonReport(BaseModel):
    """What ``Evaluator.evaluate_many`` returns; ``report.json`` holds the same."""

    model_config = ConfigDict(frozen=True)

    dataset: str = Field(description="Name of the evaluation dataset.")
    dataset_uri: str = Field(description="Where the records were read.")
    baseline: str = Field(description="The model the others are compared with.")
    reports: dict[str, EvaluationReport] = Field(description="Each model's report, by label.")
    deltas: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict,
        description="Per compared model and metric: baseline, value, delta, ci_low, ci_high, records, "
        "significant (the interval excludes zero).",
    )
    confidence: float = Field(default=0.95, description="Confidence level of the intervals.")
    files: dict[str, str] = Field(default_factory=dict, description="Report files written, by kind.")

    def __getitem__(self, name: str) -> EvaluationReport:
        return self.reports[name]

    def delta(self, name: str, metric: str = "exact_match_score") -> dict[str, Any]:
        """The difference of ``name`` from the baseline on ``metric``, with its interval."""
        try:
            return self.deltas[name][metric]
        except KeyError:
            raise KeyError(
                f"no comparison of {name!r} on {metric!r}; compared: {sorted(self.deltas)}"
            ) from None

    def summary(self) -> list[str]:
        """One line per model, then one per difference: what a terminal shows."""
        lines = []
        for name, report in self.reports.items():
            s = report.scores
            errors = f", {report.error_count} errors" if report.error_count else ""
            lines.append(
                f"{name}: exact match {fmt(s.get('exact_match_score'))}, quasi-exact "
                f"{fmt(s.get('quasi_exact_match_score'))}, F1 {fmt(s.get('f1_score'))} "
                f"({report.record_count} records{errors})"
            )
        pct = round(self.confidence * 100)
        for name, metrics in self.deltas.items():
            for metric in ("exact_match_score", "f1_score"):
                if metric in metrics:
                    d = metrics[metric]
                    lines.append(
                        f"{name} - {self.baseline}, {metric}: {d['delta']:+.3f} "
                        f"({pct}% CI {d['ci_low']:+.3f} to {d['ci_high']:+.3f})"
                    )
        return lines
