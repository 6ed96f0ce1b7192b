"""Inference engines for the local Bedrock.

The server talks to an :class:`InferenceEngine`, which loads a model directory into a
:class:`LoadedModel`. Streaming is the one primitive: a non-streaming call collects the stream.
:class:`TransformersEngine` is the built-in (CPU or GPU); another engine, such as vLLM, plugs in
by implementing the two Protocols.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = [
    "Delta",
    "InferenceEngine",
    "LoadedModel",
    "SamplingParams",
    "TransformersEngine",
    "chat_template_of",
]

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """What a request asks of generation, whatever its body format."""

    max_new_tokens: int
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    top_k: int = 0
    """0 means no top-k cut."""
    stop: tuple[str, ...] = ()
    seed: int | None = None
    add_special_tokens: bool = True
    """Completion prompts get the tokenizer's BOS; rendered chat templates already carry theirs."""


@dataclass
class Delta:
    """A piece of generated text. The last one has ``finish_reason`` and the token counts set."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_sequence: str | None = None


class LoadedModel(Protocol):
    chat_template: str | None

    def render_chat(self, messages: Sequence[dict[str, Any]]) -> str:
        """The prompt text for a chat, by the model's own chat template, ready for the assistant."""
        ...

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[Delta]: ...

    def close(self) -> None: ...


class InferenceEngine(Protocol):
    name: str

    def load(self, model_dir: Path) -> LoadedModel: ...


def chat_template_of(model_dir: Path) -> str | None:
    """The chat template Bedrock would use: ``chat_template.jinja`` wins over tokenizer_config.json."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
        if isinstance(template, list):  # named templates: take "default"
            for item in template:
                if isinstance(item, dict) and item.get("name") == "default":
                    return str(item.get("template"))
    return None


@dataclass
class TransformersEngine:
    """transformers on CPU or GPU, one request at a time per model (a lock serializes them)."""

    device: str = "auto"
    name: str = field(default="transformers", init=False)

    def load(self, model_dir: Path) -> LoadedModel:
        return _TransformersModel(model_dir, self.device)


class _TransformersModel:
    def __init__(self, model_dir: Path, device: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # Half precision is slow on CPU; weights stored as bf16 are computed in fp32 there.
        dtype = "auto" if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device)
        self.model.eval()
        self.chat_template = chat_template_of(model_dir)
        self._lock = threading.Lock()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self._eos: set[int] = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    def render_chat(self, messages: Sequence[dict[str, Any]]) -> str:
        return str(
            self.tokenizer.apply_chat_template(
                list(messages),
                chat_template=self.chat_template,
                tokenize=False,
                add_generation_prompt=True,
            )
        )

    def close(self) -> None:
        self.model = None

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[Delta]:
        with self._lock:
            yield from self._stream_locked(prompt, params)

    def _stream_locked(self, prompt: str, params: SamplingParams) -> Iterator[Delta]:
        import torch

        ids = self.tokenizer(prompt, add_special_tokens=params.add_special_tokens, return_tensors="pt")
        input_ids = ids["input_ids"].to(self.device)
        prompt_tokens = int(input_ids.shape[1])
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(params.seed)
        generated: list[int] = []
        emitted = ""
        finish: FinishReason = "length"
        hit: str | None = None
        holdback = max((len(s) for s in params.stop), default=1) - 1
        past: Any = None
        step_ids = input_ids
        with torch.inference_mode():
            while len(generated) < params.max_new_tokens:
                out = self.model(input_ids=step_ids, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = _pick(out.logits[0, -1].float(), params, generator)
                if token in self._eos:
                    finish = "stop"
                    break
                generated.append(token)
                step_ids = torch.tensor([[token]], device=self.device)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
                    continue
                cut = _find_stop(text, params.stop)
                if cut is not None:
                    hit, index = cut
                    text = text[:index]
                    finish = "stop"
                    if len(text) > len(emitted):
                        yield Delta(text[len(emitted) :])
                    emitted = text
                    break
                safe = len(text) - holdback if params.stop else len(text)
                if safe > len(emitted):
                    yield Delta(text[len(emitted) : safe])
                    emitted = text[:safe]
        if hit is None:
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if len(text) > len(emitted):
                yield Delta(text[len(emitted) :])
        yield Delta(
            "",
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(generated),
            stop_sequence=hit,
        )


def _find_stop(text: str, stops: tuple[str, ...]) -> tuple[str, int] | None:
    best: tuple[str, int] | None = None
    for stop in stops:
        index = text.find(stop)
        if index >= 0 and (best is None or index < best[1]):
            best = (stop, index)
    return best


def _pick(logits: Any, params: SamplingParams, generator: Any) -> int:
    import torch

    if params.temperature == 0:
        return int(torch.argmax(logits).item())
    logits = logits / params.temperature
    if params.top_k > 0:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1])).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator).item())
