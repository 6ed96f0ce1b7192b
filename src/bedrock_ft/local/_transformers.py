"""The transformers engine: requests that arrive together are decoded together, as one batch.

A CPU decode step of a small model costs little more for 4 sequences than for 1 (measured on 2 cores:
60 ms for 1, 103 ms for 4), so a worker thread per model collects the requests waiting for it (up to
``max_batch``, within ``batch_window`` seconds of the first) and decodes them side by side with left
padding. Each sequence keeps its own sampling settings, stop sequences and token counts, and leaves
the batch when it finishes. Requests that arrive while a batch runs form the next one.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bedrock_ft.local.engine import (
    Delta,
    FinishReason,
    PromptTooLongError,
    SamplingParams,
    TokenLogprob,
    chat_template_of,
)

__all__ = ["TransformersModel"]

log = logging.getLogger("bedrock_ft.local")

_DONE = object()


@dataclass
class IncrementalText:
    """Text of a growing token sequence, decoded a few tokens at a time.

    Decoding the whole answer at every step is quadratic in its length. This decodes only the new
    tokens, after those read the step before as context (as vLLM does): tokenizers that drop a leading
    space at the start of a decode (SentencePiece's Metaspace) still produce it. Special tokens are
    left out of the window, or one would stand where that context belongs.
    """

    text: str = ""
    """Everything decoded so far."""
    visible: list[int] = field(default_factory=list)
    prefix_offset: int = 0
    read_offset: int = 0

    def add(self, tokenizer: Any, token: int, special: set[int]) -> bool:
        """Take one token; True when ``text`` grew, False while it ends in incomplete UTF-8."""
        if token in special:
            return False
        self.visible.append(token)
        return self.flush(tokenizer)

    def flush(self, tokenizer: Any) -> bool:
        before = tokenizer.decode(
            self.visible[self.prefix_offset : self.read_offset], skip_special_tokens=True
        )
        after = tokenizer.decode(self.visible[self.prefix_offset :], skip_special_tokens=True)
        if after.endswith("\ufffd") or len(after) <= len(before):
            return False
        self.text += after[len(before) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(self.visible)
        return True


@dataclass
class _Request:
    prompt: str
    params: SamplingParams
    out: queue.Queue[Any] = field(default_factory=queue.Queue)
    cancelled: bool = False
    # Decoding state, owned by the worker.
    ids: list[int] = field(default_factory=list)
    generated: list[int] = field(default_factory=list)
    decoded: IncrementalText = field(default_factory=IncrementalText)
    emitted: str = ""
    finished: bool = False
    generator: Any = None
    constraint: Any = None
    """A :class:`~bedrock_ft.local._constrained.JsonConstraint` for structured output, or None."""
    logprobs: list[TokenLogprob] = field(default_factory=list)


class TransformersModel:
    def __init__(
        self, model_dir: Path, device: str, *, max_batch: int = 8, batch_window: float = 0.01
    ) -> None:
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
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self._eos: set[int] = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        pad = self.tokenizer.pad_token_id
        self._pad = int(pad if pad is not None else next(iter(self._eos), 0))
        self._special = set(self.tokenizer.all_special_ids)
        config = self.model.config
        self.max_positions: int | None = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        self.max_batch = max_batch
        self.batch_window = batch_window
        self.batch_sizes: Counter[int] = Counter()
        """How many batches of each size were decoded (for tests and tuning)."""
        self._ll_tokenizer: Any = None
        self._ll_lock = threading.Lock()
        self._closed = False
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name=f"decode-{model_dir.name}", daemon=True)
        self._worker.start()

    # --- LoadedModel ---------------------------------------------------------------------------------

    def render_chat(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None
    ) -> str:
        return str(
            self.tokenizer.apply_chat_template(
                list(messages),
                tools=list(tools) if tools else None,
                chat_template=self.chat_template,
                tokenize=False,
                add_generation_prompt=True,
            )
        )

    def stream(self, prompt: str, params: SamplingParams) -> Iterator[Delta]:
        """Tokenizes and checks at once (errors raise here, not at the first ``next``)."""
        if self._closed:
            raise RuntimeError("the model was unloaded")
        request = _Request(prompt, params)
        request.ids = list(self.tokenizer(prompt, add_special_tokens=params.add_special_tokens)["input_ids"])
        needed = len(request.ids) + params.max_new_tokens
        if self.max_positions and needed > self.max_positions:
            raise PromptTooLongError(
                f"This model's maximum context length is {self.max_positions} tokens. However, you "
                f"requested {needed} tokens ({len(request.ids)} in the prompt, {params.max_new_tokens} "
                "for the completion). Reduce the prompt or the maximum tokens."
            )
        if params.seed is not None:
            import torch

            request.generator = torch.Generator(device=self.device).manual_seed(params.seed)
        if params.json_schema is not None:
            request.constraint = self._constraint(params.json_schema)
        self._queue.put(request)
        return self._results(request)

    def _constraint(self, schema: str) -> Any:
        from bedrock_ft.local._constrained import JsonConstraint, llguidance_tokenizer

        with self._ll_lock:
            if self._ll_tokenizer is None:
                self._ll_tokenizer = llguidance_tokenizer(self.tokenizer, int(self.model.config.vocab_size))
        return JsonConstraint(self._ll_tokenizer, schema)

    def _results(self, request: _Request) -> Iterator[Delta]:
        try:
            while True:
                item = request.out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.cancelled = True  # a consumer that stops early frees its batch slot

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)

    # --- the worker ----------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None or self._closed:  # closed: what hasn't started yet fails
                if first is not None:
                    self._queue.put(first)
                self._drain()
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=self.batch_window)
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self.batch_sizes[len(batch)] += 1
            try:
                self._decode(batch)
            except Exception as exc:
                log.exception("generation failed")
                for request in batch:
                    if not request.finished:
                        request.out.put(exc)
            finally:
                for request in batch:
                    request.out.put(_DONE)

    def _drain(self) -> None:
        """After close: nothing still queued may wait forever."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item.out.put(RuntimeError("the model was unloaded"))
                item.out.put(_DONE)
        self.model = None

    def _decode(self, batch: list[_Request]) -> None:
        import torch

        width = max(len(r.ids) for r in batch)
        input_ids = torch.tensor(
            [[self._pad] * (width - len(r.ids)) + r.ids for r in batch], device=self.device
        )
        mask = torch.tensor(
            [[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in batch], device=self.device
        )
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        past: Any = None
        step_ids = input_ids
        step_positions = positions
        with torch.inference_mode():
            while True:
                out = self.model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=step_positions,
                    past_key_values=past,
                    use_cache=True,
                    logits_to_keep=1,  # the prompt's other positions' logits would be (batch, width, vocab)
                )
                past = out.past_key_values
                logits = out.logits[:, -1].float()
                next_tokens = []
                for row, request in enumerate(batch):
                    if request.finished or request.cancelled:
                        request.finished = True
                        next_tokens.append(self._pad)
                        continue
                    try:  # a request's own constraint failing ends that request, not the batch
                        scores = logits[row]
                        if request.constraint is not None:
                            scores = request.constraint.mask(scores)
                        token = _pick(scores, request.params, request.generator)
                        if request.constraint is not None:
                            request.constraint.accept(token)
                    except Exception as exc:
                        log.exception("structured output failed")
                        request.out.put(exc)
                        request.finished = True
                        next_tokens.append(self._pad)
                        continue
                    if request.params.logprobs is not None and token not in self._eos:
                        request.logprobs.append(self._logprob(logits[row], token, request.params.logprobs))
                    next_tokens.append(token)
                    self._advance(request, token)
                if all(request.finished for request in batch):
                    return
                step_ids = torch.tensor([[t] for t in next_tokens], device=self.device)
                step_positions = step_positions[:, -1:] + 1
                mask = torch.cat(
                    [mask, torch.ones((len(batch), 1), dtype=mask.dtype, device=self.device)], dim=1
                )

    def _logprob(self, logits: Any, token: int, top: int) -> TokenLogprob:
        """The chosen token's log probability under the model (before temperature, top-k/top-p or a
        schema's mask: the model's own distribution), with the ``top`` likeliest tokens'."""
        import torch

        logprobs = torch.log_softmax(logits, dim=-1)
        alternatives: tuple[tuple[str, float], ...] = ()
        if top > 0:
            values, ids = torch.topk(logprobs, min(top, logprobs.shape[-1]))
            pairs = zip(values.tolist(), ids.tolist(), strict=True)
            alternatives = tuple((self.tokenizer.decode([int(i)]), float(v)) for v, i in pairs)
        return TokenLogprob(self.tokenizer.decode([token]), float(logprobs[token]), alternatives)

    def _advance(self, request: _Request, token: int) -> None:
        """Take one sampled token for ``request``: emit new text, or finish it."""
        params = request.params
        if token in self._eos:
            self._finish(request, "stop", None)
            return
        request.generated.append(token)
        if request.decoded.add(self.tokenizer, token, self._special):
            text = request.decoded.text
            longest = max((len(s) for s in params.stop), default=0)
            cut = _find_stop(text, params.stop, start=max(0, len(request.emitted) - longest))
            if cut is not None:
                stop, index = cut
                if index > len(request.emitted):
                    request.out.put(Delta(text[len(request.emitted) : index]))
                request.emitted = text[:index]
                self._finish(request, "stop", stop)
                return
            safe = len(text) - max(longest - 1, 0)
            if safe > len(request.emitted):
                request.out.put(Delta(text[len(request.emitted) : safe]))
                request.emitted = text[:safe]
        if len(request.generated) >= params.max_new_tokens:
            self._finish(request, "length", None)

    def _finish(self, request: _Request, reason: FinishReason, stop: str | None) -> None:
        if stop is None:
            request.decoded.flush(self.tokenizer)  # whatever is still pending
            text = request.decoded.text
            if len(text) > len(request.emitted):
                request.out.put(Delta(text[len(request.emitted) :]))
        request.out.put(
            Delta(
                "",
                finish_reason=reason,
                prompt_tokens=len(request.ids),
                completion_tokens=len(request.generated),
                stop_sequence=stop,
                logprobs=tuple(request.logprobs) if request.params.logprobs is not None else None,
            )
        )
        request.finished = True


def _find_stop(text: str, stops: tuple[str, ...], start: int = 0) -> tuple[str, int] | None:
    best: tuple[str, int] | None = None
    for stop in stops:
        index = text.find(stop, start)
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
        keep[0] = True  # the likeliest token always stays (top_p 0 keeps it alone)
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator).item())
