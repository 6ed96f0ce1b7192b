"""Constrained decoding for structured outputs (``response_format``), through llguidance.

llguidance compiles a JSON Schema into a grammar and, at each step, says which tokens may come next;
the worker masks every other token out of the logits before sampling. It is an optional dependency of
the ``local`` extra, imported only when a request asks for structured output: without it, such a
request is refused with a message naming the package.
"""

from __future__ import annotations

import json
from typing import Any

from bedrock_ft.local.engine import UnsupportedRequestError

__all__ = ["PACKAGE", "JsonConstraint", "llguidance_tokenizer"]

PACKAGE = "llguidance"


def _llguidance() -> Any:
    try:
        import llguidance
        import llguidance.hf
    except ImportError:
        raise UnsupportedRequestError(
            f"structured output (response_format) needs the {PACKAGE} package in the local Bedrock: "
            f"pip install 'bedrock-ft[local]' (or pip install {PACKAGE})"
        ) from None
    return llguidance


def llguidance_tokenizer(tokenizer: Any, vocab_size: int) -> Any:
    """llguidance's view of a fast Hugging Face tokenizer (about a second to build: cache it)."""
    llguidance = _llguidance()
    return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)


class JsonConstraint:
    """The tokens allowed next for output that must match one JSON Schema; one per request."""

    def __init__(self, ll_tokenizer: Any, schema: str) -> None:
        llguidance = _llguidance()
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(json.loads(schema))
        except ValueError as exc:
            raise UnsupportedRequestError(f"response_format: the JSON schema is not valid: {exc}") from None
        matcher = llguidance.LLMatcher(ll_tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise UnsupportedRequestError(
                f"response_format: the JSON schema can't be enforced: {matcher.get_error()}"
            )
        self._matcher = matcher

    def mask(self, logits: Any) -> Any:
        """``logits`` (one row) with every token the schema forbids next set to -inf."""
        import numpy as np
        import torch

        bits = np.unpackbits(
            np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8), bitorder="little"
        )
        allowed = torch.from_numpy(bits[: logits.shape[-1]].astype(bool)).to(logits.device)
        if allowed.shape[-1] < logits.shape[-1]:  # tokens past the tokenizer's vocabulary: never allowed
            allowed = torch.cat([allowed, allowed.new_zeros(logits.shape[-1] - allowed.shape[-1])])
        if self._matcher.is_error() or not bool(allowed.any()):
            raise RuntimeError(f"structured output: no token can continue the JSON: {self._failure()}")
        return logits.masked_fill(~allowed, float("-inf"))

    def accept(self, token: int) -> None:
        """Advance past the token just chosen (always one :meth:`mask` allowed)."""
        if not self._matcher.consume_token(token):
            raise RuntimeError(f"structured output: token {token} was refused: {self._failure()}")

    def _failure(self) -> str:
        return str(self._matcher.get_error() or self._matcher.stop_reason())
