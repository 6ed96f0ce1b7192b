"""The Custom Model Import rules, as data: what each checks, how serious breaking it is, how to fix it.

``check_model_dir`` reports findings under these ids; docs/preflight.md and the local Bedrock's import
job list them from here. ``severity`` is the most serious level a rule reports: a few rules also report
a milder finding for a milder case (each ``description`` says when).

Architecture-specific rules (``Architecture.preflight_rules``) report under their own ids. The
built-in ones are listed here too; a third party's are not.
"""

from __future__ import annotations

from dataclasses import dataclass

from bedrock_ft._findings import Severity

__all__ = [
    "CONTEXT_LIMIT",
    "FLOAT_DTYPES",
    "RULES",
    "SUPPORTED_TOKENIZER_CLASSES",
    "WEIGHT_SUFFIXES_REFUSED",
    "Rule",
    "get_rule",
]

CONTEXT_LIMIT = 131_072
"""Longest context accepted. Bedrock says "under 128K"; Llama 3.1 (131072) imports, so 128Ki is allowed."""

SUPPORTED_TOKENIZER_CLASSES = frozenset(
    f"{base}{fast}"
    for base in ("T5", "Llama", "CodeLlama", "GPT2", "GPTNeoX", "PreTrained", "Qwen2")
    for fast in ("Tokenizer", "TokenizerFast")
)
"""``tokenizer_class`` values Bedrock supports: each family's slow and fast tokenizer."""

FLOAT_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
"""safetensors dtype -> ``torch_dtype`` name, for the three precisions Bedrock accepts."""

WEIGHT_SUFFIXES_REFUSED = (".bin", ".pt", ".pth", ".ckpt", ".gguf")
"""Pickled (or GGUF) weights: Bedrock reads safetensors only."""


@dataclass(frozen=True)
class Rule:
    """One Custom Model Import rule."""

    id: str
    severity: Severity
    description: str
    """What the rule checks."""
    fix: str
    """What to do when it fails."""


RULES: tuple[Rule, ...] = (
    Rule(
        "model-dir", Severity.ERROR,
        "The path exists and is a directory.",
        "Point at the directory that holds config.json and the weights (the merged model's output).",
    ),
    Rule(
        "config-json", Severity.ERROR,
        "config.json is present and holds a JSON object.",
        "Save the model with save_pretrained(), which writes config.json.",
    ),
    Rule(
        "config-keys", Severity.ERROR,
        "config.json has the keys Bedrock's transformers 4.x reads to pick the model: model_type (a "
        "string) and architectures (a list of class names).",
        "Save with transformers 4.x, or add the keys from the base model's config.json.",
    ),
    Rule(
        "config-torch-dtype", Severity.WARNING,
        "config.json has torch_dtype. transformers 4.56 and later write only dtype, which Bedrock's "
        "transformers 4.51 does not read (it then infers the dtype from the weights).",
        'Add "torch_dtype" with the same value as "dtype" (for example "bfloat16").',
    ),
    Rule(
        "architecture", Severity.ERROR,
        "model_type is a registered architecture that Bedrock supports, and an architectures class is one "
        "Bedrock accepts for it. (A registered architecture's own rule that crashes is a warning here.)",
        "Fine-tune a supported family (bedrock-ft architectures lists them), or register the family.",
    ),
    Rule(
        "safetensors-only", Severity.ERROR,
        "Weights are .safetensors: no .bin, .pt, .pth, .ckpt or .gguf file anywhere in the directory, "
        "and at least one .safetensors file.",
        "Save with save_pretrained(safe_serialization=True) and delete the pickled or GGUF files "
        "(including leftovers such as training_args.bin or original/*.pth).",
    ),
    Rule(
        "safetensors-header", Severity.ERROR,
        "Every .safetensors file has a readable header (8-byte length + JSON) whose tensors exactly cover "
        "the rest of the file: a truncated or corrupt file fails.",
        "Copy or save the file again; compare its size with the source.",
    ),
    Rule(
        "safetensors-index", Severity.ERROR,
        "Sharded weights have a consistent model.safetensors.index.json: it parses, every shard it names "
        "exists, and every tensor in its weight_map is in that shard. Several shards without an index "
        "fail. A .safetensors file that nothing loads (not in the index, or beside model.safetensors) is "
        "a warning: it is uploaded and counted against the size limit, but unused.",
        "Save again with save_pretrained(), which writes shards and index together; delete stray files.",
    ),
    Rule(
        "weight-dtype", Severity.ERROR,
        "Precision is FP32, FP16 or BF16: config.json's torch_dtype, and every tensor's dtype in the "
        "safetensors headers (F32, F16, BF16). Anything else (I8, U8, F8_*, ...) is quantized or not a "
        "float.",
        "Dequantize and save in bfloat16 (AdapterMerger merges into a bf16 base).",
    ),
    Rule(
        "quantization-config", Severity.ERROR,
        "config.json has no quantization_config: Bedrock does not accept quantized models.",
        "Merge into an unquantized base and save without quantization_config.",
    ),
    Rule(
        "weight-size", Severity.ERROR,
        "The .safetensors files total no more than the architecture's limit: 200 GB for text models, "
        "100 GB for multimodal ones (decimal GB).",
        "Import a smaller model; delete unused .safetensors files.",
    ),
    Rule(
        "context-length", Severity.ERROR,
        "The context length, max_position_embeddings or n_positions (GPT-2-style families such as "
        f"gpt_bigcode), at the top level and in text_config, is at most {CONTEXT_LIMIT} (128K).",
        f"Set it to {CONTEXT_LIMIT} or less; the model then can't use longer prompts.",
    ),
    Rule(
        "tokenizer-files", Severity.ERROR,
        "tokenizer_config.json is present and valid JSON, and tokenizer.json or tokenizer.model is present "
        "(tokenizer.json, when present, must be valid JSON).",
        "Save the tokenizer into the same directory: tokenizer.save_pretrained(model_dir).",
    ),
    Rule(
        "tokenizer-class", Severity.ERROR,
        "tokenizer_config.json's tokenizer_class is one Bedrock supports: T5, Llama, CodeLlama, GPT2, "
        "GPTNeoX, PreTrained or Qwen2, slow or Fast. No tokenizer_class at all is a warning.",
        "Save with transformers 4.x and a supported tokenizer; transformers 5's TokenizersBackend is "
        'not supported: use "PreTrainedTokenizerFast".',
    ),
    Rule(
        "tokenizer-vocab", Severity.ERROR,
        "The tokenizer's size (highest token id in tokenizer.json's vocab and added_tokens, plus one) fits "
        "the model's embedding (its rows in the safetensors header, else config vocab_size). More than 10% "
        "of the embedding's rows beyond the tokenizer is a warning (a tokenizer from another model?); "
        "fewer is normal padding and not reported. Skipped without tokenizer.json.",
        "Resize the embeddings after adding tokens (model.resize_token_embeddings(len(tokenizer))), or "
        "ship the tokenizer the model was trained with.",
    ),
    Rule(
        "chat-template", Severity.WARNING,
        "A chat template is present as chat_template in tokenizer_config.json, where AWS's guide and its "
        "Converse samples put it. OpenAIChatCompletion and Converse need one. A template only in a "
        "separate chat_template.jinja is a warning (no AWS source says Bedrock reads that file); both "
        "present and different is reported as info.",
        "Save the tokenizer with the chat template used in training (bedrock-ft keeps it in "
        "tokenizer_config.json).",
    ),
    Rule(
        "llama3-rope-override", Severity.WARNING,
        "Llama 3 models: Bedrock replaces rope_scaling with factor 8, low_freq_factor 1, high_freq_factor 4, "
        "original_max_position_embeddings 8192. A model trained with another scaling (Llama 3.2 1B/3B use "
        "factor 32) may answer differently after import. Reported by the llama and mllama architectures.",
        "Evaluate the imported model, not only the local one; prefer long-context tests.",
    ),
)  # fmt: skip

_BY_ID = {r.id: r for r in RULES}


def get_rule(rule_id: str) -> Rule:
    """The rule with this id (KeyError for an id not in :data:`RULES`)."""
    return _BY_ID[rule_id]
