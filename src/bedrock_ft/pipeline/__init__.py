"""Pipeline: the whole workflow from one config file, resumable, on the local stack or on AWS.

``Pipeline(PipelineConfig.from_file("pipeline.yaml")).run()`` (or ``bedrock-ft run pipeline.yaml``) runs
dataset -> train -> merge -> import -> invoke -> evaluate into one run directory, and skips on a re-run
every stage whose settings and input are unchanged.
"""

from __future__ import annotations

from bedrock_ft.pipeline._config import (
    STAGES,
    PipelineConfig,
    PipelineEvalConfig,
    PipelineInputs,
    SmokeTestConfig,
    SyntheticSource,
)
from bedrock_ft.pipeline._pipeline import Pipeline
from bedrock_ft.pipeline._result import PipelineRun, PlannedStage
from bedrock_ft.pipeline._services import aws_problems
from bedrock_ft.pipeline._stages import StageContext, StageFunction
from bedrock_ft.pipeline._state import RunState, StageRecord

__all__ = [
    "STAGES",
    "Pipeline",
    "PipelineConfig",
    "PipelineEvalConfig",
    "PipelineInputs",
    "PipelineRun",
    "PlannedStage",
    "RunState",
    "SmokeTestConfig",
    "StageContext",
    "StageFunction",
    "StageRecord",
    "SyntheticSource",
    "aws_problems",
]
