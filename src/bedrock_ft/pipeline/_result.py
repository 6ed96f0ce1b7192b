"""What a run returns: the plan of each stage, the outputs, and the table printed at the end."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bedrock_ft.pipeline._state import RunState

__all__ = ["PipelineRun", "PlannedStage", "load_output"]


@dataclass(frozen=True)
class PlannedStage:
    """What a run does with one stage, and why."""

    stage: str
    action: str  # "run"; "skip": unchanged; "keep": before --from/--only; "given": from inputs
    reason: str

    def __str__(self) -> str:
        return f"{self.stage:9} {self.action:5} {self.reason}"


@dataclass
class PipelineRun:
    """The result of :meth:`Pipeline.run`: each stage's output (artifact or mapping), and run.json."""

    run_dir: Path
    state: RunState
    outputs: dict[str, Any] = field(default_factory=dict)
    plan: list[PlannedStage] = field(default_factory=list)

    def __getitem__(self, stage: str) -> Any:
        return self.outputs[stage]

    def table(self) -> list[tuple[str, str, str, str]]:
        """(stage, what happened, seconds, key outputs) for each stage of the plan."""
        rows = []
        for step in self.plan:
            record = self.state.stages.get(step.stage)
            ran = record is not None and record.status not in ("skipped", "pending") and step.action == "run"
            seconds = f"{record.seconds:.1f}" if ran and record and record.seconds is not None else "-"
            action = {"run": "ran", "skip": "unchanged", "keep": "kept", "given": "given"}[step.action]
            if record is not None and record.status == "completed" and step.action == "skip":
                action, seconds = "ran", f"{record.seconds or 0:.1f}"  # an earlier stage changed its input
            if record is not None and record.status in ("failed", "interrupted"):
                action = record.status
            rows.append((step.stage, action, seconds, _key_outputs(record.summary if record else {})))
        return rows


def load_output(path: str) -> Any:
    from bedrock_ft.artifacts import load_artifact

    if Path(path).name == "manifest.json":
        return load_artifact(path)
    return json.loads(Path(path).read_text("utf-8"))


_SHOWN = {
    "records", "global_step", "first_loss", "final_loss", "tokens_per_second", "bytes", "dtype", "model_arn",
    "answer", "summary", "model_dir", "status", "cold_start_retries", "report", "s3_uri",
}  # fmt: skip


def _key_outputs(summary: Mapping[str, Any]) -> str:
    """A stage's key outputs as one cell of the run's table."""
    s = summary
    parts: list[str] = []
    if records := s.get("records"):
        parts.append(", ".join(f"{split} {n}" for split, n in records.items()) + " records")
    if s.get("global_step"):
        parts.append(f"{s['global_step']} steps")
    if s.get("first_loss") is not None and s.get("final_loss") is not None:
        parts.append(f"loss {s['first_loss']:.3f} -> {s['final_loss']:.3f}")
    if s.get("tokens_per_second"):
        parts.append(f"{s['tokens_per_second']:,.0f} tok/s")
    if s.get("bytes"):
        parts.append(f"{s.get('dtype') or ''} {s['bytes'] / 1e6:,.0f} MB".strip())
    if s.get("model_arn") and "answer" not in s:
        parts.append(str(s["model_arn"]))
    if "answer" in s:
        parts.append(f"answer {s['answer']!r}")
    for line in s.get("summary") or ():
        parts.append(str(line))
    parts += [f"{k}: {v}" for k, v in s.items() if k not in _SHOWN and v is not None]
    return "; ".join(parts)
