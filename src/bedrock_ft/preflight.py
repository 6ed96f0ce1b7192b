"""Custom Model Import preflight: the findings a rule reports, and the report that collects them.

The rule set itself (``check_model_dir``) is shared by ``BedrockImporter`` and the local Bedrock.
Architecture-specific rules live with their architecture (``bedrock_ft.architectures``) and report
the same :class:`Finding` type.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Finding", "PreflightReport", "Severity"]


class Severity(str, Enum):
    ERROR = "error"
    """Bedrock will refuse the import (or the model will not work)."""
    WARNING = "warning"
    """The import succeeds, but something behaves differently from what you may expect."""
    INFO = "info"


class Finding(BaseModel):
    """One rule's verdict on one file of a model directory."""

    model_config = ConfigDict(frozen=True)

    rule: str = Field(description="Stable rule id, for example 'llama3-rope-override'.")
    path: str = Field(description="The file the finding is about, relative to the model directory.")
    message: str = Field(description="What is wrong and what to do about it.")
    severity: Severity = Field(default=Severity.ERROR, description="How serious it is.")

    def __str__(self) -> str:
        return f"[{self.severity.value}] {self.rule} ({self.path}): {self.message}"


class PreflightReport(BaseModel):
    """All findings for one model directory."""

    model_config = ConfigDict(frozen=True)

    model_dir: str = Field(description="The directory that was checked.")
    findings: tuple[Finding, ...] = Field(default=(), description="Every finding, errors first.")

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)

    @property
    def ok(self) -> bool:
        """True when nothing would stop the import."""
        return not self.errors
