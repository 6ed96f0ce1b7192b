"""Evaluator: fmeval's QA-accuracy metrics for imported models (or any prompt-to-text callable).

Light to import: fmeval, Ray and matplotlib load only when an evaluation runs.
"""

from __future__ import annotations

from bedrock_ft.artifacts import EvaluationReport
from bedrock_ft.evaluation._comparison import ComparisonReport
from bedrock_ft.evaluation._config import EVAL_LAYOUT, EvalConfig
from bedrock_ft.evaluation._evaluator import Evaluator
from bedrock_ft.evaluation._fmeval_compat import fmeval_ray

__all__ = ["EVAL_LAYOUT", "ComparisonReport", "EvalConfig", "EvaluationReport", "Evaluator", "fmeval_ray"]
