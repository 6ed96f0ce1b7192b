"""What is evaluated: an ImportedModelClient, or any callable that maps a prompt to text; how its
prompts are made; and how it is asked, concurrently, keeping every failure on its record."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from string import Template
from typing import TYPE_CHECKING, Any

from bedrock_ft.errors import EvaluationError

if TYPE_CHECKING:
    from bedrock_ft.evaluation._config import EvalConfig
    from bedrock_ft.evaluation._data import EvalRecord

__all__ = ["Answer", "TargetAdapter"]

_SENTINEL = "BEDROCKFTMODELINPUTSENTINEL"

log = logging.getLogger("bedrock_ft")


@dataclass(frozen=True)
class Answer:
    """A record's answer: text, or the error the model ended with (never scored)."""

    text: str | None
    error: str | None
    latency_s: float | None = None
    output_tokens: int | None = None
    cached: bool = False
    """Reused from an earlier run of the same evaluation (not asked again)."""


def _is_client(target: Any) -> bool:
    return all(hasattr(target, name) for name in ("batch_complete", "render_chat", "model", "config"))


class TargetAdapter:
    """One evaluated target, seen the same way by both engines."""

    def __init__(self, target: Any, config: EvalConfig) -> None:
        if not (_is_client(target) or callable(target)):
            raise EvaluationError(
                f"cannot evaluate a {type(target).__name__}: give an ImportedModelClient or a callable that "
                "maps a prompt (str) to the model's answer (str)"
            )
        self.target = target
        self.config = config
        self.is_client = _is_client(target)
        self.model_id: str = str(
            target.model.model_arn
            if self.is_client
            else getattr(target, "model_id", None) or getattr(target, "__qualname__", type(target).__name__)
        )
        self.template = self._template()

    def _template(self) -> str:
        """The fmeval prompt template: the configured one; else the model's own chat template with
        ``$model_input`` where the user's message goes; else (a plain callable) the question as it is."""
        if self.config.prompt_template is not None:
            return self.config.prompt_template
        if not self.is_client:
            return "$model_input"
        from bedrock_ft.errors import UnsupportedFormatError

        try:
            rendered = self.target.render_chat([{"role": "user", "content": _SENTINEL}])
        except UnsupportedFormatError as exc:
            raise EvaluationError(
                f"{self.model_id} carries no chat template to build prompts with ({exc}); give the template "
                "it was trained with (InvokeConfig.chat_template) or set EvalConfig.prompt_template"
            ) from None
        if rendered.count(_SENTINEL) != 1:
            raise EvaluationError(
                f"the chat template of {self.model_id} changes the user's message, so no fixed prompt "
                "template can stand for it; set EvalConfig.prompt_template"
            )
        return str(rendered.replace("$", "$$").replace(_SENTINEL, "$model_input"))

    def prompt(self, record: EvalRecord) -> str:
        """The exact prompt for ``record``: the question (and its own system message, if any) rendered
        with the model's chat template, as training did; or the configured template filled in."""
        if self.is_client and self.config.prompt_template is None:
            messages = [{"role": "user", "content": record.question}]
            if record.system is not None:
                messages.insert(0, {"role": "system", "content": record.system})
            return str(self.target.render_chat(messages))
        return self.fill(record.question)

    def fill(self, question: str) -> str:
        """The fmeval template filled in, as fmeval's PromptComposer does."""
        return Template(self.template).substitute(model_input=question)

    def call(self, prompt: str) -> str:
        """One answer (used by the fmeval engine's ModelRunner); errors propagate."""
        if self.is_client:
            return str(self.target.complete(prompt, **self.params()).text)
        return _as_text(self.target(prompt))

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
        }
        if self.config.stop:
            params["stop"] = tuple(self.config.stop)
        return params

    def answer_all(self, prompts: Sequence[str], label: str) -> list[Answer]:
        """Every prompt answered, ``max_concurrency`` at a time, in order; a failure stays on its record.
        With ``output_dir`` set, an imported model's answers are kept as they arrive and reused by a
        later run (see :mod:`._answers`)."""
        from bedrock_ft.runtime import BatchItem, run_batch

        cfg = self.config
        cache = None
        if self.is_client and cfg.output_dir and cfg.resume:
            from bedrock_ft.evaluation._answers import AnswerCache

            cache = AnswerCache(cfg.output_dir, self.model_id, self.params())
        out: list[Answer | None] = [None] * len(prompts)
        todo: list[int] = []
        for i, prompt in enumerate(prompts):
            kept = cache.get(prompt) if cache is not None else None
            if kept is not None:
                out[i] = Answer(
                    kept["text"], None, kept.get("latency_s"), kept.get("output_tokens"), cached=True
                )
            else:
                todo.append(i)
        if cache is not None and len(todo) < len(prompts):
            log.info("%s: %d answers reused from an earlier run", self.model_id, len(prompts) - len(todo))

        def keep(item: BatchItem) -> None:
            if cache is not None and item.completion is not None:
                c = item.completion
                cache.put(item.input, c.text, c.latency_s, c.output_tokens)

        asking = [prompts[i] for i in todo]
        if self.is_client:
            result = self.target.batch_complete(
                asking,
                max_concurrency=cfg.max_concurrency,
                progress_bar=bool(cfg.progress_bar),
                on_item=keep,
                **self.params(),
            )
        else:
            result = run_batch(
                asking,
                _completion_of(self.target, self.model_id),
                max_concurrency=cfg.max_concurrency,
                progress_bar=bool(cfg.progress_bar),
                label=label,
            )
        for i, item in zip(todo, result, strict=True):
            if item.completion is not None:
                c = item.completion
                out[i] = Answer(c.text, None, c.latency_s, c.output_tokens)
            else:
                out[i] = Answer(None, f"{type(item.error).__name__}: {item.error}")
        return [a for a in out if a is not None]


def _as_text(value: Any) -> str:
    text = getattr(value, "text", value)  # a Completion, or whatever has .text
    if not isinstance(text, str):
        raise EvaluationError(f"the target returned a {type(value).__name__}, not text")
    return text


def _completion_of(fn: Callable[[str], Any], model_id: str) -> Callable[[str], Any]:
    from bedrock_ft.runtime import Completion

    def call(prompt: str) -> Completion:
        started = time.perf_counter()
        text = _as_text(fn(prompt))
        return Completion(text, "stop", None, None, time.perf_counter() - started, "callable", model_id)

    return call
