"""Tokenizer checks: a supported class, a chat template, and a vocabulary that fits the embedding."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bedrock_ft._findings import Finding, Severity
from bedrock_ft.preflight._model_dir import TOKENIZER_CONFIG, TOKENIZER_JSON, ModelDir, finding
from bedrock_ft.preflight._rules import SUPPORTED_TOKENIZER_CLASSES

__all__ = ["check_tokenizer"]

CHAT_TEMPLATE_FILE = "chat_template.jinja"
# Input embedding names of the supported families (mllama and Qwen-VL nest them under a prefix).
_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "shared.weight", "word_embeddings.weight")
_PADDING_SLACK = 0.9
"""Up to 10% of the embedding's rows beyond the tokenizer is padding; more suggests a foreign tokenizer."""


def check_tokenizer(m: ModelDir) -> Iterator[Finding]:
    yield from _tokenizer_class(m)
    yield from _chat_template(m)
    yield from _vocab(m)


def _tokenizer_class(m: ModelDir) -> Iterator[Finding]:
    if m.tokenizer_config is None:
        return  # tokenizer-files has said why
    cls = m.tokenizer_config.get("tokenizer_class") or (m.config or {}).get("tokenizer_class")
    if not cls:
        yield finding(
            "tokenizer-class", TOKENIZER_CONFIG,
            "tokenizer_config.json names no tokenizer_class, so Bedrock's support for it can't be checked. "
            'Set one, for example "PreTrainedTokenizerFast".',
            Severity.WARNING,
        )  # fmt: skip
    elif not isinstance(cls, str) or cls not in SUPPORTED_TOKENIZER_CLASSES:
        hint = " (a transformers 5 class)" if cls == "TokenizersBackend" else ""
        yield finding(
            "tokenizer-class", TOKENIZER_CONFIG,
            f"tokenizer_class {cls!r}{hint} is not one Bedrock supports: T5, Llama, CodeLlama, GPT2, "
            'GPTNeoX, PreTrained or Qwen2 (Tokenizer or TokenizerFast). Set "tokenizer_class" to a '
            'supported one, for example "PreTrainedTokenizerFast" for a tokenizer.json.',
        )  # fmt: skip


def _chat_template(m: ModelDir) -> Iterator[Finding]:
    jinja = ""
    if CHAT_TEMPLATE_FILE in m.files:
        try:
            jinja = (m.root / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            jinja = ""
    inline = (m.tokenizer_config or {}).get("chat_template")
    converse = "" if m.arch is not None and not m.arch.supports_converse else " and Converse"
    if not inline and jinja:
        yield finding(
            "chat-template", CHAT_TEMPLATE_FILE,
            "the chat template is only in chat_template.jinja, but AWS documents tokenizer_config.json's "
            f"chat_template as where Bedrock reads it: OpenAIChatCompletion{converse} may not work. Copy "
            'the template into tokenizer_config.json ("chat_template").',
        )  # fmt: skip
    elif not inline:
        yield finding(
            "chat-template", TOKENIZER_CONFIG,
            "no chat template (chat_template in tokenizer_config.json): "
            f"OpenAIChatCompletion{converse} will not work, only the completion formats. Save the tokenizer "
            "with the chat template used in training.",
        )  # fmt: skip
    elif jinja and isinstance(inline, str) and inline.strip() != jinja:
        yield finding(
            "chat-template", CHAT_TEMPLATE_FILE,
            "chat_template.jinja and tokenizer_config.json's chat_template differ; Bedrock reads "
            "tokenizer_config.json's (AWS's guide and samples). Delete the one you did not train with.",
            Severity.INFO,
        )  # fmt: skip


def _vocab(m: ModelDir) -> Iterator[Finding]:
    size = tokenizer_size(m.tokenizer_json)
    rows, source = _embedding_rows(m)
    if size is None or rows is None:
        return
    if size > rows:
        yield finding(
            "tokenizer-vocab", TOKENIZER_JSON,
            f"the tokenizer has {size} tokens but {source} has {rows} rows: ids from {rows} on index past "
            "the embedding. Resize the embeddings after adding tokens "
            "(model.resize_token_embeddings(len(tokenizer))), or ship the tokenizer the model was trained "
            "with.",
        )  # fmt: skip
    elif size < _PADDING_SLACK * rows:
        yield finding(
            "tokenizer-vocab", TOKENIZER_JSON,
            f"the tokenizer has {size} tokens but {source} has {rows} rows, more than padding explains: "
            "is this the tokenizer the model was trained with?",
            Severity.WARNING,
        )  # fmt: skip


def tokenizer_size(tokenizer: Mapping[str, Any] | None) -> int | None:
    """Highest token id + 1 over tokenizer.json's vocab and added tokens: the embedding rows ids need.

    Where ids are dense (the usual case) this is the vocab's size plus the added tokens not in it.
    """
    model = (tokenizer or {}).get("model")
    vocab = model.get("vocab") if isinstance(model, Mapping) else None
    ids: list[int] = []
    if isinstance(vocab, Mapping):
        ids.extend(v for v in vocab.values() if isinstance(v, int))
    elif isinstance(vocab, list):  # Unigram (T5): [piece, score] pairs, the id is the position
        ids.append(len(vocab) - 1)
    else:
        return None
    added = (tokenizer or {}).get("added_tokens") or []
    ids.extend(t["id"] for t in added if isinstance(t, Mapping) and isinstance(t.get("id"), int))
    return max(ids) + 1 if ids else None


def _embedding_rows(m: ModelDir) -> tuple[int | None, str]:
    """Rows of the input embedding, from the safetensors headers; else config.json's vocab_size.

    The header is the truth: Mllama's embedding has vocab_size + 8 rows, for its image tokens.
    """
    found = [
        (info.shape[0], name)
        for shard in sorted(m.loaded & set(m.headers))
        for name, info in m.headers[shard].items()
        if name.endswith(_EMBEDDING_SUFFIXES) and info.shape
    ]
    if found:
        rows, name = max(found)
        return rows, f"the embedding {name}"
    vocab = m.text_config.get("vocab_size", (m.config or {}).get("vocab_size"))
    return (vocab, "config.json's vocab_size") if isinstance(vocab, int) else (None, "")
