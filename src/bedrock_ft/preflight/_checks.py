"""``check_model_dir``: run every rule of :mod:`bedrock_ft.preflight._rules` on a model directory.

Reads only JSON files and safetensors headers, so it is fast on a 100 GB model and needs neither torch
nor the safetensors package. It never raises for a bad model: every problem is a finding.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bedrock_ft._findings import Finding, PreflightReport, Severity
from bedrock_ft.preflight._model_dir import CONFIG, ModelDir, finding
from bedrock_ft.preflight._rules import CONTEXT_LIMIT
from bedrock_ft.preflight._tokenizer import check_tokenizer
from bedrock_ft.preflight._weights import check_precision, check_size, check_weight_files

__all__ = ["check_model_dir"]


def check_model_dir(path: str | os.PathLike[str]) -> PreflightReport:
    """Check a Hugging Face model directory against every Custom Model Import rule.

    Returns a :class:`PreflightReport`, errors first. A missing directory is an error finding, not an
    exception; ``check_model_dir(path).raise_for_errors()`` raises
    :class:`~bedrock_ft.errors.PreflightError` when there are errors.
    """
    root = Path(path)
    if not root.is_dir():
        what = "is a file, not a directory" if root.exists() else "does not exist"
        message = f"{path} {what}: point at the directory that holds config.json and the weights."
        return PreflightReport.of(str(path), [finding("model-dir", ".", message)])
    model = ModelDir(root)
    findings = list(model.load())
    # The architecture check runs before the weight size and chat template checks, which read model.arch.
    for check in (
        _config_keys,
        _architecture,
        check_weight_files,
        check_precision,
        check_size,
        _context,
        check_tokenizer,
    ):
        findings.extend(check(model))
    return PreflightReport.of(str(path), findings)


def _config_keys(m: ModelDir) -> Iterator[Finding]:
    if m.config is None:
        return
    missing = [k for k in ("model_type", "architectures") if not m.config.get(k)]
    if missing:
        yield finding(
            "config-keys", CONFIG,
            f"config.json has no {' or '.join(missing)}; Bedrock's transformers 4.x needs both to pick the "
            "model class. Save with transformers 4.x, or copy them from the base model's config.json.",
        )  # fmt: skip
    model_type, classes = _model_keys(m.config)
    for key, value, want in (
        ("model_type", model_type, 'a string, for example "llama"'),
        ("architectures", classes, 'a list of class names, for example ["LlamaForCausalLM"]'),
    ):
        if value is None and m.config.get(key):
            yield finding(
                "config-keys", CONFIG,
                f"config.json's {key} is {_shown(m.config[key])}; Bedrock's transformers 4.x needs {want}. "
                "Copy it from the base model's config.json.",
            )  # fmt: skip
    if "torch_dtype" not in m.config:
        dtype = m.config.get("dtype")
        has = f'only "dtype": {dtype!r} (what transformers 4.56 and later write)' if dtype else "no dtype"
        yield finding(
            "config-torch-dtype", CONFIG,
            f"config.json has {has} but no torch_dtype, the key Bedrock's transformers 4.51 reads; it then "
            f'infers the dtype from the weights. Add "torch_dtype": {json.dumps(dtype or "bfloat16")}.',
        )  # fmt: skip


def _model_keys(config: Mapping[str, Any]) -> tuple[str | None, list[str] | None]:
    """model_type and architectures when they have the right type (a string, a list of strings)."""
    model_type, classes = config.get("model_type"), config.get("architectures")
    ok_classes = isinstance(classes, list) and all(isinstance(c, str) for c in classes)
    return (model_type if isinstance(model_type, str) else None), (classes if ok_classes else None)


def _shown(value: object, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _architecture(m: ModelDir) -> Iterator[Finding]:
    if m.config is None:
        return  # config-json has said why
    model_type, typed_classes = _model_keys(m.config)
    classes = typed_classes or []
    if not (model_type or classes):
        return  # config-keys has said why (missing, or of the wrong type)
    from bedrock_ft.architectures import architecture_for_config, get_architecture, list_architectures
    from bedrock_ft.errors import RegistryError

    supported = [a for a in map(get_architecture, list_architectures()) if a.bedrock_supported]
    listing = ", ".join(t for a in supported for t in a.model_types)
    try:  # only well-typed keys reach the registry: a list where a string belongs is config-keys' finding
        arch = architecture_for_config({**m.config, "model_type": model_type, "architectures": classes})
    except RegistryError:
        yield finding(
            "architecture", CONFIG,
            f"model_type {model_type!r} (architectures {list(classes)}) is not an architecture Bedrock "
            f"Custom Model Import supports. Supported model_types: {listing}.",
        )  # fmt: skip
        return
    if not arch.bedrock_supported:
        yield finding(
            "architecture", CONFIG,
            f"architecture {arch.name!r} (model_type {model_type!r}) is registered, but Bedrock does not "
            f"import it. Supported model_types: {listing}.",
        )  # fmt: skip
        return
    m.arch = arch
    if classes and not set(classes) & set(arch.hf_architectures):
        yield finding(
            "architecture", CONFIG,
            f"architectures {list(classes)} has no class Bedrock accepts for {arch.name}; use "
            f"{' or '.join(arch.hf_architectures)} (save the model loaded for generation, not another head).",
        )  # fmt: skip
    try:
        found = list(arch.check_config(m.config))
    except Exception as exc:  # one broken plugin rule must not stop the other checks
        yield finding(
            "architecture", CONFIG,
            f"a preflight rule of architecture {arch.name!r} failed ({type(exc).__name__}: {exc}); "
            "its check did not run.",
            Severity.WARNING,
        )  # fmt: skip
    else:
        yield from found


CONTEXT_KEYS = ("max_position_embeddings", "n_positions")
"""Where config.json keeps the context length: most families, and GPT-2-style ones (gpt_bigcode)."""


def _context(m: ModelDir) -> Iterator[Finding]:
    configs: list[tuple[str, Mapping[str, Any]]] = [("", m.config or {})]
    if m.text_config is not m.config:
        configs.append(("text_config.", m.text_config))
    for where, cfg in configs:
        for key in CONTEXT_KEYS:
            value = cfg.get(key)
            if isinstance(value, int) and value > CONTEXT_LIMIT:
                yield finding(
                    "context-length", CONFIG,
                    f"{where}{key} is {value}; Bedrock supports contexts up to 128K "
                    f"({CONTEXT_LIMIT} tokens). Set it to {CONTEXT_LIMIT} or less.",
                )  # fmt: skip
