"""What a preflight rule reports (:class:`Finding`), and the report that collects the findings."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from bedrock_ft.errors import PreflightError

__all__ = ["Finding", "PreflightReport", "Severity"]


class Severity(str, Enum):
    ERROR = "error"
    """Bedrock will refuse the import (or the model will not work)."""
    WARNING = "warning"
    """The import succeeds, but something behaves differently from what you may expect."""
    INFO = "info"


_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


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

    @classmethod
    def of(cls, model_dir: str, findings: Iterable[Finding]) -> PreflightReport:
        """A report with ``findings`` ordered errors first, then warnings, then info (stable within each)."""
        return cls(model_dir=model_dir, findings=tuple(sorted(findings, key=lambda f: _ORDER[f.severity])))

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

    def raise_for_errors(self) -> PreflightReport:
        """Raise :class:`~bedrock_ft.errors.PreflightError` listing the errors, if any; else return self.

        Warnings never raise: ``check_model_dir(path).raise_for_errors()`` passes a model Bedrock accepts.
        """
        if self.errors:
            raise PreflightError(
                self.errors,
                f"{self.model_dir} fails Bedrock Custom Model Import preflight "
                f"({len(self.errors)} error{'s' if len(self.errors) != 1 else ''}):\n"
                + "\n".join(f"  - {f}" for f in self.errors),
            )
        return self
