"""Everything but the weights in a Bedrock export: config, generation config, tokenizer, chat template.

The export holds exactly what Custom Model Import reads (DESIGN §8): the safetensors shards and index,
``config.json`` (with ``torch_dtype``, the key Bedrock's transformers 4.x reads), ``generation_config.json``,
``tokenizer.json``, ``tokenizer_config.json`` with the trained chat template embedded, and
``tokenizer.model`` where the tokenizer has one. Nothing else: no adapter, no optimizer state, no
``.bin``, no separate ``chat_template.jinja`` (Bedrock reads the template from tokenizer_config.json,
where it is written).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bedrock_ft._io import atomic_write_text, sha256_file
from bedrock_ft.errors import MergeError
from bedrock_ft.merging._base import read_json_object
from bedrock_ft.merging._checkpoint import INDEX_NAME, WrittenFile

__all__ = ["ALLOWED_FILES", "chat_template_of", "is_allowed", "tokenizer_source", "write_metadata"]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
ALLOWED_FILES = frozenset(
    {"config.json", "generation_config.json", "tokenizer_config.json", INDEX_NAME, *TOKENIZER_FILES}
)
_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")


def is_allowed(name: str) -> bool:
    return name in ALLOWED_FILES or bool(_SHARD.match(name))


def tokenizer_source(adapter_dir: Path, base_dir: Path) -> Path:
    """The tokenizer saved with the adapter (it holds the trained chat template), else the base's."""
    if (adapter_dir / "tokenizer_config.json").is_file() and any(
        (adapter_dir / f).is_file() for f in TOKENIZER_FILES
    ):
        return adapter_dir
    return base_dir


def chat_template_of(tok_dir: Path) -> str | None:
    """The chat template a tokenizer directory carries (``chat_template.jinja`` wins, as in transformers)."""
    jinja = tok_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = tok_dir / "tokenizer_config.json"
    if config.is_file():
        template = read_json_object(config).get("chat_template")
        if isinstance(template, str):
            return template
    return None


def _dump(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


_MARKER = "bedrock-ft-end-of-turn-probe"


def _token_text(value: Any) -> str | None:
    """A special token from tokenizer_config.json: a string, or a serialized AddedToken."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def end_of_turn_token(
    template: str, tokenizer_json: Mapping[str, Any], tok_config: Mapping[str, Any]
) -> tuple[str, int] | None:
    """The special token the template writes right after an assistant's message (``<|im_end|>``,
    ``<|eot_id|>``, ``</s>``...), found by rendering a sample conversation; None if there is none."""
    from bedrock_ft.chat_templates import ChatTemplate

    special = {
        t["content"]: t["id"]
        for t in tokenizer_json.get("added_tokens") or []
        if t.get("special") and isinstance(t.get("content"), str) and isinstance(t.get("id"), int)
    }
    tokens = {
        k: v
        for k in ("bos_token", "eos_token", "pad_token", "unk_token")
        if (v := _token_text(tok_config.get(k)))
    }
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _MARKER}]
    try:
        text = ChatTemplate("custom", template).renderer(tokens)(conversation)
    except Exception:  # a template that refuses the sample says nothing about its end token
        return None
    after = text.partition(_MARKER)[2].lstrip(" ")
    found = [t for t in special if t and after.startswith(t)]
    if not found:
        return None
    token = max(found, key=len)
    return token, special[token]


def _write_config(out: Path, base_config: Mapping[str, Any], dtype: str, untie: bool) -> None:
    config = dict(base_config)
    config["torch_dtype"] = dtype
    if "dtype" in config:
        config["dtype"] = dtype
    text = config.get("text_config")
    if isinstance(text, dict) and ("torch_dtype" in text or "dtype" in text):
        config["text_config"] = {**text, **{k: dtype for k in ("torch_dtype", "dtype") if k in text}}
    if untie:  # the merge wrote a head that differs from the embedding
        config["tie_word_embeddings"] = False
        if isinstance(config.get("text_config"), dict):
            config["text_config"] = {**config["text_config"], "tie_word_embeddings": False}
    atomic_write_text(out / "config.json", _dump(config))


def _write_tokenizer(
    out: Path, tok_dir: Path, template: str | None
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """tokenizer_config.json with the template embedded (markers stripped), and the tokenizer files.
    Returns the names written, tokenizer_config and the parsed tokenizer.json."""
    from bedrock_ft.chat_templates import strip_generation_tags

    if not (tok_dir / "tokenizer_config.json").is_file():
        raise MergeError(
            f"{tok_dir}: no tokenizer_config.json; Bedrock needs it (save the tokenizer with the model)"
        )
    tok_config = read_json_object(tok_dir / "tokenizer_config.json")
    if isinstance(template, str):
        tok_config["chat_template"] = strip_generation_tags(template)
    elif isinstance(tok_config.get("chat_template"), list):  # named templates: strip each
        tok_config["chat_template"] = [
            {**t, "template": strip_generation_tags(t["template"])}
            if isinstance(t.get("template"), str)
            else t
            for t in tok_config["chat_template"]
        ]
    atomic_write_text(out / "tokenizer_config.json", _dump(tok_config))
    names = ["tokenizer_config.json"]
    tokenizer_json: dict[str, Any] = {}
    for name in TOKENIZER_FILES:
        if (tok_dir / name).is_file():
            data = (tok_dir / name).read_bytes()
            (out / name).write_bytes(data)
            names.append(name)
            if name == "tokenizer.json":
                tokenizer_json = json.loads(data)
    if len(names) == 1:
        raise MergeError(f"{tok_dir}: neither tokenizer.json nor tokenizer.model; Bedrock needs one")
    return names, tok_config, tokenizer_json


def write_metadata(
    out: Path,
    *,
    base_dir: Path,
    base_config: Mapping[str, Any],
    tok_dir: Path,
    chat_template: str | None,
    dtype: str,
    untie: bool = False,
) -> tuple[list[WrittenFile], dict[str, Any]]:
    """Write the non-weight files into ``out``; return them and notes for the manifest."""
    notes: dict[str, Any] = {}
    _write_config(out, base_config, dtype, untie)
    template = chat_template if chat_template is not None else chat_template_of(tok_dir)
    tok_names, tok_config, tokenizer_json = _write_tokenizer(out, tok_dir, template)
    if isinstance(tok_config.get("chat_template"), str):
        notes["chat_template"] = tok_config["chat_template"]

    gen_file = base_dir / "generation_config.json"
    if gen_file.is_file():
        generation = read_json_object(gen_file)
    else:
        generation = {
            k: base_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in base_config
        }
        generation["_from_model_config"] = True
    end = end_of_turn_token(template, tokenizer_json, tok_config) if isinstance(template, str) else None
    if end is not None:
        eos = generation.get("eos_token_id", base_config.get("eos_token_id"))
        ids = list(eos) if isinstance(eos, list) else [eos] if isinstance(eos, int) else []
        if end[1] not in ids:  # e.g. a ChatML-trained Mistral: stop at <|im_end|>, not only at </s>
            generation["eos_token_id"] = [*ids, end[1]]
            notes["eos_tokens_added"] = [end[0]]
    atomic_write_text(out / "generation_config.json", _dump(generation))
    names = ["config.json", *tok_names, "generation_config.json"]
    return [WrittenFile(n, (out / n).stat().st_size, sha256_file(out / n)) for n in names], notes
