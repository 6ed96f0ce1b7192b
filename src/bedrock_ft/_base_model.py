"""Finding a base model: ``embedded``, a local Hugging Face directory, or a hub id.

One resolution for every stage that loads a base (training, merging), each raising its own error
type with its own hint.
"""

from __future__ import annotations

import json
from pathlib import Path

from bedrock_ft.errors import BedrockFTError

__all__ = ["WEIGHT_SUFFIXES", "fetch_from_hub", "local_model_dir"]

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def local_model_dir(
    name: str,
    *,
    error: type[BedrockFTError],
    label: str = "base_model",
    missing: str = ": no such model directory",
) -> Path | None:
    """The directory ``name`` means: the embedded model's for ``embedded``, or a checked local model
    directory (config.json and weights). None when ``name`` is not a path here, so a hub id.

    A path that is not a directory here (``name`` starts with ``.``, ``/`` or ``~``, or names a file)
    raises ``error``: ``"{label} {name}{missing}"``.
    """
    if name == "embedded":
        from bedrock_ft.models import embedded_model

        return embedded_model()
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise error(f"{label} {path}: no config.json (is this a Hugging Face model directory?)")
        if not any(p.name.endswith(WEIGHT_SUFFIXES) for p in path.iterdir()):
            raise error(f"{label} {path}: no weights (*.safetensors) next to config.json")
        return path.resolve()
    if path.exists() or name.startswith((".", "/", "~")):
        raise error(f"{label} {name}{missing}")
    return None


def fetch_from_hub(repo: str) -> Path:
    """A hub model's config, tokenizer and the weights its index lists (the local cache, or a download).

    Only the listed shards: repos such as Mistral's also hold a consolidated.safetensors copy."""
    from huggingface_hub import snapshot_download

    path = Path(snapshot_download(repo, allow_patterns=["*.json", "tokenizer.model", "*.jinja"]))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weights = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    else:
        weights = ["model.safetensors", "pytorch_model*.bin"]  # one file; old repos have .bin only
    return Path(snapshot_download(repo, allow_patterns=weights))
