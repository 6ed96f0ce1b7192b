"""fmeval, offline: the one workaround bedrock-ft needs, kept here.

``import fmeval.eval_algorithms.qa_accuracy`` builds a ``BertscoreHelperModel`` as a default argument, and
``QAAccuracy()`` builds another; each calls ``evaluate.load("bertscore")``, which fetches the metric's
script from the Hugging Face hub, and fails without a network even with ``HF_HUB_OFFLINE=1``. Ray workers
build them again, and fail the same way.

- In this process, :func:`qa_accuracy` imports fmeval and builds ``QAAccuracy`` with ``evaluate.load``
  wrapped for just that moment: ``"bertscore"`` gives a :class:`DeferredBertScore`, which loads the real
  metric on its first ``compute()`` when BERTScore was asked for, and otherwise scores a 0.0 placeholder
  that bedrock-ft drops from its reports (fmeval's aggregation asserts on NaN, so a number it must be).
  ``evaluate.load`` is restored afterwards: other code in the process sees the real one.
- In Ray workers, :func:`install` is the ``worker_process_setup_hook`` of the Ray that :func:`start_ray`
  starts, with ``BEDROCK_FT_BERTSCORE`` in the workers' environment saying whether BERTScore is wanted.
  A Ray started by bedrock-ft with the other setting is restarted; one started by someone else is used
  as it is, with a warning.
- An evaluation shuts down the Ray it started when it ends (its processes hold GiBs). Inside
  :func:`fmeval_ray`, every evaluation reuses one Ray instead, which saves its start-up (tens of
  seconds) each time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "BERTSCORE_ENV",
    "check_bertscore",
    "fmeval_ray",
    "install",
    "make_qa_accuracy",
    "qa_accuracy",
    "start_ray",
    "stop_ray",
]

log = logging.getLogger(__name__)

BERTSCORE_ENV = "BEDROCK_FT_BERTSCORE"
_HOOK = f"{__name__}.install"
# "bertscore": the setting of the Ray bedrock-ft started (absent: none started); "kept": fmeval_ray() holds it
_RAY: dict[str, bool] = {}


class DeferredBertScore:
    """What ``evaluate.load("bertscore")`` gives while fmeval is loaded by bedrock-ft: the real metric,
    loaded on first use when BERTScore is enabled; a 0.0 placeholder (dropped) when it is not."""

    def __init__(self, load: Any, enabled: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._load, self.enabled, self._args, self._kwargs = load, enabled, args, kwargs
        self._metric: Any = None

    def compute(self, **kwargs: Any) -> dict[str, list[float]]:
        if not self.enabled:
            return {"f1": [0.0] * len(kwargs.get("predictions") or [None])}
        if self._metric is None:
            self._metric = self._load("bertscore", *self._args, **self._kwargs)
        result: dict[str, list[float]] = self._metric.compute(**kwargs)
        return result


def _quiet_sagemaker() -> None:
    # fmeval imports sagemaker, whose config loader prints INFO lines to *stdout* unless its logger was
    # configured: quiet it (only where the application left it unset), so `--json` output stays JSON.
    quiet = logging.getLogger("sagemaker.config")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)


def _wrap(original: Any, enabled: bool) -> Any:
    def load(path: str, *args: Any, **kwargs: Any) -> Any:
        if path == "bertscore":
            return DeferredBertScore(original, enabled, args, kwargs)
        return original(path, *args, **kwargs)

    load._bedrock_ft = True  # type: ignore[attr-defined]
    return load


@contextmanager
def _patched(enabled: bool) -> Iterator[None]:
    _quiet_sagemaker()
    import evaluate

    original = evaluate.load
    evaluate.load = _wrap(original, enabled)
    try:
        yield
    finally:
        evaluate.load = original


def install() -> None:
    """The Ray workers' setup hook: fmeval loads offline for the worker's life; BERTScore only when
    ``BEDROCK_FT_BERTSCORE=1`` (idempotent)."""
    _quiet_sagemaker()
    import evaluate

    if getattr(evaluate.load, "_bedrock_ft", False):
        return
    evaluate.load = _wrap(evaluate.load, os.environ.get(BERTSCORE_ENV) == "1")


def qa_accuracy(bertscore: bool = False) -> Any:
    """fmeval's ``qa_accuracy`` module, imported offline."""
    with _patched(bertscore):
        from fmeval.eval_algorithms import qa_accuracy as module
    return module


def make_qa_accuracy(delimiter: str, bertscore_model: str, bertscore: bool) -> Any:
    """fmeval's ``QAAccuracy``, built offline; its BERTScore is real only when ``bertscore``."""
    module = qa_accuracy(bertscore)
    with _patched(bertscore):
        return module.QAAccuracy(
            module.QAAccuracyConfig(
                target_output_delimiter=delimiter, model_type_for_bertscore=bertscore_model
            )
        )


def check_bertscore(model_type: str) -> None:
    """Load BERTScore and its model now, so a missing one fails before any model call, clearly."""
    from bedrock_ft.errors import EvaluationError

    module = qa_accuracy(True)
    try:
        with _patched(True):
            metric = module.BertscoreHelperModel(model_type)
        metric.get_helper_scores("a", "a")
    except Exception as exc:
        raise EvaluationError(
            f"BERTScore is not available here ({type(exc).__name__}: {exc}); it needs the 'bertscore' metric "
            f"and the {model_type} model from the Hugging Face hub or its cache. Set EvalConfig.bertscore="
            "False to evaluate without it."
        ) from exc


def _ray_system_config() -> dict[str, int]:
    """Keep idle workers a while: fmeval's evaluate() runs many small Ray Data tasks next to three
    long-lived actors, and by default Ray kills idle workers above one per CPU after a second, so each
    task waits for a fresh worker that imports fmeval again (measured on 2 CPUs: 32 s an evaluation of
    8 records with a warm Ray, 22 s with this)."""
    from bedrock_ft._system import usable_cpus

    return {"num_workers_soft_limit": usable_cpus() + 4, "idle_worker_killing_time_threshold_ms": 60_000}


def start_ray(*, bertscore: bool, progress_bars: bool = True) -> None:
    """Start Ray for fmeval with :func:`install` in every worker (see the module's docstring)."""
    import ray
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = progress_bars
    logging.getLogger("ray.data").setLevel(logging.INFO if progress_bars else logging.WARNING)
    if ray.is_initialized():
        if "bertscore" not in _RAY:
            log.warning(
                "Ray was started outside bedrock-ft; its workers must run %s first "
                "(worker_process_setup_hook), or fmeval's import fails offline",
                _HOOK,
            )
            return
        if _RAY["bertscore"] == bertscore:
            return
        ray.shutdown()  # ours, with the other BERTScore setting: workers must start again
    env = {BERTSCORE_ENV: "1" if bertscore else "0"}
    if not bertscore:
        env["HF_HUB_OFFLINE"] = "1"
    ray.init(
        runtime_env={"worker_process_setup_hook": _HOOK, "env_vars": env},
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        ignore_reinit_error=True,
        _system_config=_ray_system_config(),
    )
    _RAY["bertscore"] = bertscore


def stop_ray() -> None:
    """Shut down the Ray that :func:`start_ray` started (its processes hold GiBs); one started by
    someone else, or held by :func:`fmeval_ray`, is left alone."""
    if "bertscore" in _RAY and not _RAY.get("kept"):
        import ray

        ray.shutdown()
        _RAY.clear()


@contextmanager
def fmeval_ray(*, bertscore: bool = False) -> Iterator[None]:
    """One Ray for every ``engine="fmeval"`` evaluation inside the block: started now (with the offline
    fix in its workers), reused by each evaluation instead of started and stopped by it, and shut down
    at the end. ``bertscore`` is the setting the evaluations will ask for (another one restarts Ray)."""
    start_ray(bertscore=bertscore, progress_bars=False)
    _RAY["kept"] = True
    try:
        yield
    finally:
        _RAY.pop("kept", None)
        stop_ray()
