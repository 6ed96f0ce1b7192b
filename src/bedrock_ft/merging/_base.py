"""The base side of a merge: find the full-precision base, and refuse one that is quantized."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bedrock_ft._base_model import fetch_from_hub, local_model_dir
from bedrock_ft.errors import MergeError

__all__ = ["FLOAT_DTYPES", "check_not_quantized", "read_base_config", "read_json_object", "resolve_base"]

FLOAT_DTYPES = frozenset({"F32", "F16", "BF16", "F64"})


def resolve_base(base_model: str | None, *, recorded: str | None) -> Path:
    """The base model's directory: the configured one, else the one recorded with the adapter."""
    chosen = base_model or recorded
    if not chosen:
        raise MergeError(
            "no base model: the adapter does not record one; pass MergeConfig(base_model=...) (a directory, "
            "a hub id or 'embedded')"
        )
    where = "recorded with the adapter" if not base_model else "given"
    hint = (
        f" ({where}) is not a directory here; pass MergeConfig(base_model=...) with the full-precision "
        "base the adapter was trained on"
    )
    found = local_model_dir(chosen, error=MergeError, label="base model", missing=hint)
    if found is not None:
        return found
    try:
        return fetch_from_hub(chosen)
    except Exception as exc:
        raise MergeError(f"base model {chosen}: can't fetch it ({type(exc).__name__}: {exc})") from None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object; MergeError naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MergeError(f"{path}: not a JSON object")
    return data


def read_base_config(base_dir: Path) -> dict[str, Any]:
    return read_json_object(base_dir / "config.json")


_QUANT_NAMES = {
    "bitsandbytes": "bitsandbytes", "gptq": "GPTQ", "awq": "AWQ", "fp8": "FP8",
    "compressed-tensors": "compressed-tensors",
    "aqlm": "AQLM", "hqq": "HQQ", "eetq": "EETQ", "exl2": "EXL2", "torchao": "torchao", "mxfp4": "MXFP4",
}  # fmt: skip


def check_not_quantized(base_dir: Path, config: dict[str, Any], weight_dtypes: dict[str, str]) -> None:
    """Refuse a quantized base: its config says so, or its 2-D weights are not floating point."""
    quant = config.get("quantization_config")
    text = config.get("text_config")
    if quant is None and isinstance(text, dict):
        quant = text.get("quantization_config")
    packed = sorted(k for k, d in weight_dtypes.items() if k.endswith(".weight") and d not in FLOAT_DTYPES)
    if not quant and not packed:
        return
    if quant:
        method = quant.get("quant_method", "unknown") if isinstance(quant, dict) else "unknown"
        what = (
            f"quantized with {_QUANT_NAMES.get(str(method), method)} (config.json has a quantization_config)"
        )
    else:
        what = f"stored quantized ({packed[0]} is {weight_dtypes[packed[0]]})"
    raise MergeError(
        f"base model {base_dir} is {what}. Merging into quantized weights rounds the adapter's update away, "
        "and Bedrock imports only float32, float16 or bfloat16 weights. Merge into the full-precision "
        "checkpoint the quantized one was made from (for example mistralai/Mistral-7B-v0.1): "
        "MergeConfig(base_model=...). A QLoRA adapter fits it, because QLoRA quantizes that checkpoint as "
        "it loads."
    )
