"""The fmeval ``ModelRunner`` around an evaluated target, so fmeval's own ``evaluate()`` runs unchanged.

fmeval ships the runner to its Ray workers by pickling it. A client's boto3 connections cannot travel,
so the runner travels as what rebuilds it (the ImportedModel and the InvokeConfig, or the callable) and
each worker makes its own client. A failed call answers :data:`ERROR_MARK` and the reason, so the record
comes back marked as an error rather than scored as a wrong answer.
"""

from __future__ import annotations

from typing import Any

# Module-level on purpose: this module is imported only by the fmeval engine, once fmeval is wanted.
from fmeval.model_runners.model_runner import ModelRunner  # noqa: TID253

from bedrock_ft.evaluation._engines import ERROR_MARK
from bedrock_ft.evaluation._target import TargetAdapter

__all__ = ["ImportedModelRunner"]


class ImportedModelRunner(ModelRunner):  # type: ignore[misc]  # fmeval is untyped
    """``predict(prompt) -> (text, None)`` through an ImportedModelClient (or a callable)."""

    def __init__(self, adapter: TargetAdapter) -> None:
        # fmeval's own __init__ builds a JSON composer/extractor for SageMaker-style endpoints; the
        # client speaks Bedrock's formats itself, so there is nothing for them to do.
        self.adapter = adapter

    def predict(self, prompt: str) -> tuple[str | None, float | None]:
        try:
            return self.adapter.call(prompt), None
        except Exception as exc:  # kept on the record as an error, never scored as an answer
            return f"{ERROR_MARK}{type(exc).__name__}: {exc}", None

    def __reduce__(self) -> tuple[Any, ...]:
        target = self.adapter.target
        if self.adapter.is_client:
            return _rebuild_client, (target.model, target.config, self.adapter.config)
        return _rebuild_callable, (target, self.adapter.config)


def _rebuild_client(model: Any, invoke_config: Any, eval_config: Any) -> ImportedModelRunner:
    from bedrock_ft.runtime import ImportedModelClient

    return ImportedModelRunner(TargetAdapter(ImportedModelClient(model, invoke_config), eval_config))


def _rebuild_callable(target: Any, eval_config: Any) -> ImportedModelRunner:
    return ImportedModelRunner(TargetAdapter(target, eval_config))
