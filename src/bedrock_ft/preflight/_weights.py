"""Weight checks: safetensors only, a consistent index, float precision, under the size limit."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from bedrock_ft._findings import Finding, Severity
from bedrock_ft.preflight._model_dir import CONFIG, INDEX, SINGLE, ModelDir, finding
from bedrock_ft.preflight._rules import FLOAT_DTYPES, WEIGHT_SUFFIXES_REFUSED

__all__ = ["check_precision", "check_size", "check_weight_files"]

GB = 1_000_000_000


def check_weight_files(m: ModelDir) -> Iterator[Finding]:
    """No pickled or GGUF weights; safetensors that transformers 4.x can find, and nothing unused."""
    for name in m.files:
        if name.lower().endswith(WEIGHT_SUFFIXES_REFUSED):
            kind = "a GGUF file" if name.lower().endswith(".gguf") else "a pickled PyTorch file"
            yield finding(
                "safetensors-only", name,
                f"{name} is {kind}; Bedrock accepts .safetensors weights only. Save with "
                "save_pretrained(safe_serialization=True) and delete this file.",
            )  # fmt: skip
    shards = m.safetensors
    if not shards:
        yield finding(
            "safetensors-only", ".",
            "no .safetensors weights in the directory; Bedrock needs them. Save the model with "
            "save_pretrained(safe_serialization=True).",
        )  # fmt: skip
        return
    # transformers 4.x loads model.safetensors if present, else the shards the index names.
    if SINGLE in shards:
        m.loaded = {SINGLE}
    elif INDEX in m.files:
        yield from _check_index(m)
    else:
        m.loaded = set(shards)
        yield finding(
            "safetensors-index", INDEX,
            f"{len(shards)} .safetensors file(s) ({', '.join(shards[:3])}) but neither model.safetensors nor "
            "model.safetensors.index.json: transformers finds no weights. Save with save_pretrained(), "
            "which writes the index with the shards.",
        )  # fmt: skip
    for name in shards:
        if name not in m.loaded:
            why = "beside model.safetensors" if SINGLE in m.loaded else "not in model.safetensors.index.json"
            yield finding(
                "safetensors-index", name,
                f"{name} is {why}, so nothing loads it, yet it is uploaded and counts toward the size "
                "limit. Delete it.",
                Severity.WARNING,
            )  # fmt: skip


def _check_index(m: ModelDir) -> Iterator[Finding]:
    index, problem = m.read_json(INDEX)
    weight_map = (index or {}).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        m.loaded = set(m.safetensors)
        yield finding(
            "safetensors-index", INDEX,
            f"{problem or 'model.safetensors.index.json has no weight_map of tensor name -> shard file'}. "
            "Save the model again with save_pretrained().",
        )  # fmt: skip
        return
    by_shard: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(tensor)
    m.loaded = set(by_shard)
    for shard, tensors in sorted(by_shard.items()):
        if shard not in m.files:
            yield finding(
                "safetensors-index", shard,
                f"model.safetensors.index.json maps {len(tensors)} tensor(s) to {shard}, which is missing. "
                "Copy every shard, or save the model again.",
            )  # fmt: skip
        elif shard in m.headers:
            absent = [t for t in tensors if t not in m.headers[shard]]
            if absent:
                yield finding(
                    "safetensors-index", shard,
                    f"{len(absent)} tensor(s) that model.safetensors.index.json maps to {shard} are not in "
                    f"it (e.g. {absent[0]!r}): index and shards come from different saves. Save again.",
                )  # fmt: skip


def check_precision(m: ModelDir) -> Iterator[Finding]:
    """FP32, FP16 or BF16 only, in the tensors and in config.json; no quantization_config."""
    for name, tensors in m.headers.items():
        odd: dict[str, list[str]] = {}
        for tensor, info in tensors.items():
            if info.dtype not in FLOAT_DTYPES:
                odd.setdefault(info.dtype, []).append(tensor)
        if odd:
            shown = "; ".join(f"{len(ts)} {dt} (e.g. {ts[0]!r})" for dt, ts in sorted(odd.items()))
            yield finding(
                "weight-dtype", name,
                f"{name} holds tensors that are not F32, F16 or BF16: {shown}. Bedrock accepts FP32, FP16 or "
                "BF16 weights only (quantized ones are refused); dequantize and save in bfloat16.",
            )  # fmt: skip
    config = m.config or {}
    dtype = config.get("torch_dtype", config.get("dtype"))
    if isinstance(dtype, str) and dtype not in FLOAT_DTYPES.values():
        yield finding(
            "weight-dtype", CONFIG,
            f"config.json's torch_dtype is {dtype!r}; Bedrock accepts float32, float16 or bfloat16. "
            "Save the model in bfloat16.",
        )  # fmt: skip
    for where, cfg in (("", config), ("text_config.", m.text_config)):
        quant = cfg.get("quantization_config")
        if quant is not None:
            method = quant.get("quant_method", "unknown") if isinstance(quant, Mapping) else "unknown"
            yield finding(
                "quantization-config", CONFIG,
                f"config.json has {where}quantization_config (quant_method {method!r}): the model is "
                "quantized, and Bedrock accepts only FP32, FP16 or BF16 models. Merge into an unquantized "
                "base, save in bfloat16, and drop quantization_config.",
            )  # fmt: skip
            return


def check_size(m: ModelDir) -> Iterator[Finding]:
    """All .safetensors files together (all are uploaded) within the architecture's limit."""
    total = sum((m.root / name).stat().st_size for name in m.safetensors)
    limit = m.arch.max_weight_bytes if m.arch else 200 * GB
    if total > limit:
        kind = "multimodal" if m.arch and m.arch.multimodal else "text"
        yield finding(
            "weight-size", ".",
            f"the .safetensors files total {total / GB:.1f} GB, over Bedrock's {limit // GB} GB limit for "
            f"{kind} models. Import a smaller model, and delete .safetensors files nothing loads.",
        )  # fmt: skip
