"""A scripted inference engine for the local Bedrock: the engine seam of ``LocalStack(engine=...)``.

Tests of what surrounds generation (import jobs, quotas, cold starts, throttling, retries, batches)
need answers, not a model: this engine answers at once, from a script, through the same server, HTTP
and boto3 code as the transformers engine. Tests of what a model says use the real engine.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bedrock_ft.local.engine import Delta, SamplingParams, chat_template_of


def echo(prompt: str) -> str:
    """The default script: the prompt's last words back."""
    return " ".join(prompt.split()[-8:]) or "ok"


class ScriptedModel:
    def __init__(self, model_dir: Path, answer: Callable[[str], str], engine: ScriptedEngine) -> None:
        self.chat_template = chat_template_of(model_dir)
        self.model_dir = model_dir
        self._answer = answer
        self._engine = engine

    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None
    ) -> str:
        from bedrock_ft.chat_templates import ChatTemplate

        if self.chat_template is None:
            raise ValueError("no chat template")
        if tools:  # a template that renders tools gets them, as transformers' apply_chat_template does
            import jinja2

            template = jinja2.Environment().from_string(self.chat_template)
            return template.render(messages=list(messages), tools=list(tools), add_generation_prompt=True)
        return ChatTemplate("scripted", self.chat_template).renderer({})(messages, add_generation_prompt=True)

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[Delta]:
        """The scripted answer word by word: max_new_tokens words at most, cut at a stop sequence. A
        word ``<raise:Code>`` fails the generation there with that service error (mid-stream)."""
        with self._engine.lock:
            self._engine.prompts.append(prompt)
            self._engine.params.append(params)
        words = self._answer(prompt).split(" ")
        prompt_tokens = len(prompt.split())
        text, count = "", 0
        for i, word in enumerate(words):
            if word.startswith("<raise:") and word.endswith(">"):
                from bedrock_ft.local._errors import ServiceError

                raise ServiceError(word[len("<raise:") : -1], f"scripted failure after {count} words")
            if count == params.max_new_tokens:
                yield Delta("", "length", prompt_tokens, count)
                return
            piece = word if i == 0 else " " + word
            stop = next((s for s in params.stop if s in text + piece), None)
            if stop is not None:
                cut = (text + piece).index(stop)
                yield Delta((text + piece)[len(text) : cut], "stop", prompt_tokens, count, stop_sequence=stop)
                return
            text += piece
            count += 1
            yield Delta(piece)
        yield Delta("", "stop", prompt_tokens, count)

    def close(self) -> None:
        with self._engine.lock:
            self._engine.closed += 1


@dataclass
class ScriptedEngine:
    """Loads a model directory in ``load_seconds`` (a cold start) and answers with ``answer(prompt)``.
    Records every prompt it was asked, and how many models were loaded and closed."""

    answer: Callable[[str], str] = echo
    load_seconds: float = 0.0
    name: str = "scripted"
    prompts: list[str] = field(default_factory=list)
    params: list[SamplingParams] = field(default_factory=list)
    loads: int = 0
    closed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, model_dir: Path) -> ScriptedModel:
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir}: no config.json")
        time.sleep(self.load_seconds)
        with self.lock:
            self.loads += 1
        return ScriptedModel(model_dir, self.answer, self)
