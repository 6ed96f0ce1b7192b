"""What a client needs from a model's tokenizer files to render chats as the model was trained."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bedrock_ft.artifacts import ModelArtifact

__all__ = ["chat_facts", "model_chat_facts"]


def chat_facts(read: Callable[[str], bytes | None]) -> dict[str, Any]:
    """The chat template, its special tokens, and whether the tokenizer adds a BOS token itself, from a
    model's tokenizer files (``read(name)`` returns a file's bytes, or None)."""
    config = _json_object(read("tokenizer_config.json"))
    template = config.get("chat_template")  # where Bedrock reads it (AWS's guide and samples)
    jinja = None if isinstance(template, str) else read("chat_template.jinja")
    if jinja:  # only a separate file: still the training template, for rendering prompts here
        template = jinja.decode("utf-8", errors="replace")
    tokens: dict[str, str] = {}
    for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            tokens[key] = value
    return {
        "chat_template": template if isinstance(template, str) else None,
        "special_tokens": tokens,
        "adds_bos_token": _adds_bos(config, read, tokens.get("bos_token")),
    }


def model_chat_facts(artifact: ModelArtifact | None, model_dir: Path) -> dict[str, Any]:
    """:func:`chat_facts` of a model directory; the merge's record of the template (the one it was
    trained with) wins over tokenizer_config.json's."""

    def read(name: str) -> bytes | None:
        try:
            return (model_dir / name).read_bytes()
        except OSError:
            return None

    facts = chat_facts(read)
    if artifact is not None:
        facts["chat_template"] = artifact.chat_template
    return facts


def _json_object(data: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(data) if data else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _adds_bos(config: dict[str, Any], read: Callable[[str], bytes | None], bos: str | None) -> bool | None:
    """Whether tokenizing a prompt puts ``bos`` in front: ``add_bos_token`` when the config says, else
    the fast tokenizer's post-processor."""
    if isinstance(config.get("add_bos_token"), bool):
        return bool(config["add_bos_token"])
    if bos is None:
        return False
    data = read("tokenizer.json")
    if data is None:
        return None
    processor = _json_object(data).get("post_processor")
    processors = [processor] if isinstance(processor, dict) else []
    if processors and processors[0].get("type") == "Sequence":
        processors = [p for p in processors[0].get("processors") or [] if isinstance(p, dict)]
    for proc in processors:
        single = proc.get("single") if proc.get("type") == "TemplateProcessing" else None
        if isinstance(single, list) and single:
            first = single[0].get("SpecialToken") if isinstance(single[0], dict) else None
            return isinstance(first, dict) and first.get("id") == bos
    return False
