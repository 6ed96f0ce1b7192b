"""fmeval, offline: the one workaround bedrock-ft needs, kept here.

``import fmeval.eval_algorithms.qa_accuracy`` builds a ``BertscoreHelperModel`` as a default argument,
which calls ``evaluate.load("bertscore")``: that fetches the metric's script from the Hugging Face hub at
import time, and fails without a network even with ``HF_HUB_OFFLINE=1``. Ray workers import fmeval again,
so they fail the same way.

:func:`install` wraps ``evaluate.load`` so that ``"bertscore"`` returns a stand-in that loads the real
metric on its first ``compute()``, and only when BERTScore was asked for (``BEDROCK_FT_BERTSCORE=1``);
otherwise it scores 0.0, a placeholder bedrock-ft drops from its reports (fmeval's aggregation asserts
on NaN, so a number it must be). Every other metric loads as before.
:func:`start_ray` starts Ray with :func:`install` as the ``worker_process_setup_hook`` and the setting in
the workers' environment, so fmeval's own ``evaluate()`` runs offline too.
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["BERTSCORE_ENV", "bertscore_enabled", "check_bertscore", "install", "qa_accuracy", "start_ray"]

log = logging.getLogger(__name__)

BERTSCORE_ENV = "BEDROCK_FT_BERTSCORE"
_HOOK = f"{__name__}.install"


def bertscore_enabled() -> bool:
    return os.environ.get(BERTSCORE_ENV) == "1"


class DeferredBertScore:
    """What ``evaluate.load("bertscore")`` returns once :func:`install` ran: the real metric, loaded on
    first use when BERTScore is enabled; a 0.0 placeholder per prediction (dropped) when it is not."""

    def __init__(self, load: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._load, self._args, self._kwargs = load, args, kwargs
        self._metric: Any = None

    def compute(self, **kwargs: Any) -> dict[str, list[float]]:
        if not bertscore_enabled():
            return {"f1": [0.0] * len(kwargs.get("predictions") or [None])}
        if self._metric is None:
            self._metric = self._load("bertscore", *self._args, **self._kwargs)
        result: dict[str, list[float]] = self._metric.compute(**kwargs)
        return result


def install() -> None:
    """Make fmeval importable offline (idempotent; also the Ray workers' setup hook)."""
    # fmeval imports sagemaker, whose config loader prints INFO lines to *stdout* unless its logger was
    # configured: quiet it (only where the application left it unset), so `--json` output stays JSON.
    quiet = logging.getLogger("sagemaker.config")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)
    import evaluate

    if getattr(evaluate.load, "_bedrock_ft", False):
        return
    original = evaluate.load

    def load(path: str, *args: Any, **kwargs: Any) -> Any:
        if path == "bertscore":
            return DeferredBertScore(original, args, kwargs)
        return original(path, *args, **kwargs)

    load._bedrock_ft = True  # type: ignore[attr-defined]
    evaluate.load = load


def qa_accuracy() -> Any:
    """fmeval's ``qa_accuracy`` module, imported after :func:`install`."""
    install()
    from fmeval.eval_algorithms import qa_accuracy as module

    return module


def check_bertscore(model_type: str) -> None:
    """Load BERTScore and its model now, so a missing one fails before any model call, clearly."""
    from bedrock_ft.errors import EvaluationError

    os.environ[BERTSCORE_ENV] = "1"
    try:
        metric = qa_accuracy().BertscoreHelperModel(model_type)
        metric.get_helper_scores("a", "a")
    except Exception as exc:
        os.environ[BERTSCORE_ENV] = "0"
        raise EvaluationError(
            f"BERTScore is not available here ({type(exc).__name__}: {exc}); it needs the 'bertscore' metric "
            f"and the {model_type} model from the Hugging Face hub or its cache. Set EvalConfig.bertscore="
            "False to evaluate without it."
        ) from exc


def start_ray(*, progress_bars: bool = True) -> None:
    """Start Ray for fmeval with :func:`install` in every worker; a Ray started elsewhere is kept, with
    a warning, as its workers may lack the hook."""
    import ray
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = progress_bars
    logging.getLogger("ray.data").setLevel(logging.INFO if progress_bars else logging.WARNING)

    os.environ.setdefault(BERTSCORE_ENV, "0")
    if ray.is_initialized():
        log.warning(
            "Ray was already started; its workers must run %s first (worker_process_setup_hook), or "
            "fmeval's import fails offline",
            _HOOK,
        )
        return
    ray.init(
        runtime_env={
            "worker_process_setup_hook": _HOOK,
            "env_vars": {BERTSCORE_ENV: os.environ[BERTSCORE_ENV], "HF_HUB_OFFLINE": "1"}
            if not bertscore_enabled()
            else {BERTSCORE_ENV: "1"},
        },
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
    )
