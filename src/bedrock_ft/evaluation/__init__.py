"""Evaluator: fmeval's QA-accuracy metrics for imported models (or any prompt-to-text callable).

Light to import: fmeval, Ray and matplotlib load only when an evaluation runs.
"""

from __future__ import annotations

from bedrock_ft.artifacts import EvaluationReport
from bedrock_ft.evaluation.config import EvalConfig
from bedrock_ft.evaluation.evaluator import Evaluator
from bedrock_ft.evaluation.report import ComparisonReport

__all__ = ["ComparisonReport", "EvalConfig", "EvaluationReport", "Evaluator"]
