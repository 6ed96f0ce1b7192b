"""Custom Model Import preflight: will Bedrock accept this model directory?

:func:`check_model_dir` runs every rule of :data:`RULES` (docs/preflight.md lists them) and returns a
:class:`PreflightReport`. ``BedrockImporter`` and the local Bedrock's import job share it, so a model
that passes here passes there. Architecture-specific rules live with their architecture
(``bedrock_ft.architectures``) and report the same :class:`Finding` type.

This package reads JSON and safetensors headers only: it runs on the core install, without torch.
"""

from __future__ import annotations

from bedrock_ft._findings import Finding, PreflightReport, Severity
from bedrock_ft.preflight._checks import check_model_dir
from bedrock_ft.preflight._rules import CONTEXT_LIMIT, RULES, SUPPORTED_TOKENIZER_CLASSES, Rule, get_rule

__all__ = [
    "CONTEXT_LIMIT",
    "RULES",
    "SUPPORTED_TOKENIZER_CLASSES",
    "Finding",
    "PreflightReport",
    "Rule",
    "Severity",
    "check_model_dir",
    "get_rule",
]
