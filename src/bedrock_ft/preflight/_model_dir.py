"""One model directory's files, each read once and shared by every check."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bedrock_ft._findings import Finding, Severity
from bedrock_ft._safetensors import HeaderError, TensorInfo, read_header
from bedrock_ft.preflight._rules import get_rule

if TYPE_CHECKING:
    from bedrock_ft.architectures import Architecture

__all__ = ["CONFIG", "INDEX", "SINGLE", "TOKENIZER_CONFIG", "TOKENIZER_JSON", "ModelDir", "finding"]

CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_JSON = "tokenizer.json"
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def finding(rule: str, path: str, message: str, severity: Severity | None = None) -> Finding:
    """A finding of a rule in the table; its severity unless the case is a milder one."""
    return Finding(rule=rule, path=path, message=message, severity=severity or get_rule(rule).severity)


@dataclass
class ModelDir:
    """The files of one model directory. :meth:`load` reads them and reports what can't be read."""

    root: Path
    files: list[str] = field(default_factory=list)
    """Every file, relative, with '/' separators (``.git`` left out)."""
    config: dict[str, Any] | None = None
    tokenizer_config: dict[str, Any] | None = None
    tokenizer_json: dict[str, Any] | None = None
    headers: dict[str, dict[str, TensorInfo]] = field(default_factory=dict)
    """The parsed header of each readable .safetensors file."""
    loaded: set[str] = field(default_factory=set)
    """The .safetensors files transformers would load (set by the weights check)."""
    arch: Architecture | None = None
    """The supported architecture, once the architecture check found one."""

    @property
    def safetensors(self) -> list[str]:
        return [f for f in self.files if f.endswith(".safetensors")]

    @property
    def text_config(self) -> Mapping[str, Any]:
        """The language model's settings (multimodal models keep them under ``text_config``)."""
        text = (self.config or {}).get("text_config")
        return text if isinstance(text, Mapping) else (self.config or {})

    def load(self) -> Iterator[Finding]:
        self.files = sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(self.root).parts
        )
        self.config, problem = self.read_json(CONFIG)
        if problem:
            yield finding("config-json", CONFIG, f"{problem}. Save the model with save_pretrained().")
        fix = get_rule("tokenizer-files").fix
        self.tokenizer_config, problem = self.read_json(TOKENIZER_CONFIG)
        if problem:
            yield finding("tokenizer-files", TOKENIZER_CONFIG, f"{problem}. {fix}")
        if TOKENIZER_JSON in self.files:
            self.tokenizer_json, problem = self.read_json(TOKENIZER_JSON)
            if problem:
                yield finding("tokenizer-files", TOKENIZER_JSON, f"{problem}. {fix}")
        elif "tokenizer.model" not in self.files:
            message = f"neither tokenizer.json nor tokenizer.model is present; Bedrock needs one. {fix}"
            yield finding("tokenizer-files", TOKENIZER_JSON, message)
        for name in self.safetensors:
            try:
                self.headers[name] = read_header(self.root / name)
            except (HeaderError, OSError) as exc:
                message = f"not a readable safetensors file: {exc}. Copy or save it again."
                yield finding("safetensors-header", name, message)

    def read_json(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        """The JSON object in a file, or None and why not."""
        if name not in self.files:
            return None, f"{name} is missing"
        try:
            data = json.loads((self.root / name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return None, f"{name} is not valid JSON ({exc})"
        if not isinstance(data, dict):
            return None, f"{name} holds a JSON {type(data).__name__}, not an object"
        return data, None
