"""Custom Model Import preflight on tiny hand-made model directories (core install: no torch).

Each rule has a test that breaks exactly that rule in an otherwise clean directory, so the test fails if
the rule stops reporting it. The safetensors files are written by hand: header JSON + zero bytes.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.architectures import Architecture, register_architecture, unregister_architecture
from bedrock_ft.errors import PreflightError
from bedrock_ft.preflight import (
    CONTEXT_LIMIT,
    RULES,
    Finding,
    PreflightReport,
    Severity,
    check_model_dir,
    get_rule,
)

RunCli = Callable[..., tuple[int, str, str]]  # the run_cli fixture (tests/conftest.py)

ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "F8_E4M3": 1, "I64": 8}
VOCAB = 64
CHATML = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"

Tensors = dict[str, tuple[str, list[int]]]


def tensors(vocab: int = VOCAB, dtype: str = "BF16") -> Tensors:
    return {
        "model.embed_tokens.weight": (dtype, [vocab, 4]),
        "model.layers.0.self_attn.q_proj.weight": (dtype, [4, 4]),
        "model.norm.weight": (dtype, [4]),
    }


def write_safetensors(path: Path, spec: Tensors, *, sparse: bool = False) -> None:
    """A valid safetensors file: the header, then zero bytes (a sparse hole when ``sparse``)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, (dtype, shape) in spec.items():
        size = math.prod(shape) * ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        if sparse:
            f.truncate(8 + len(raw) + offset)
        else:
            f.write(bytes(offset))


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))


def tokenizer_json(vocab: int = VOCAB, added: int = 4) -> dict[str, Any]:
    """A BPE tokenizer.json with ``vocab - added`` base tokens and ``added`` added tokens after them."""
    base = vocab - added
    return {
        "version": "1.0",
        "added_tokens": [{"id": base + i, "content": f"<|s{i}|>", "special": True} for i in range(added)],
        "model": {"type": "BPE", "vocab": {f"t{i}": i for i in range(base)}, "merges": []},
    }


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A tiny, clean Llama-architecture model directory, as save_pretrained writes one."""
    d = tmp_path / "model"
    d.mkdir()
    write_json(
        d / "config.json",
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": 4,
            "vocab_size": VOCAB,
            "max_position_embeddings": 8192,
            "rope_theta": 10000.0,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.57.6",
        },
    )
    write_json(d / "tokenizer_config.json", {"tokenizer_class": "GPT2Tokenizer", "chat_template": CHATML})
    write_json(d / "tokenizer.json", tokenizer_json())
    write_safetensors(d / "model.safetensors", tensors())
    return d


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    write_json(path, data)


def findings(model_dir: Path, rule: str) -> list[Finding]:
    report = check_model_dir(model_dir)
    unknown = {f.rule for f in report.findings} - {r.id for r in RULES}
    assert not unknown, f"rules missing from RULES: {unknown}"
    return [f for f in report.findings if f.rule == rule]


def only(model_dir: Path, rule: str, severity: Severity = Severity.ERROR) -> Finding:
    """The single finding of ``rule``, which must have ``severity``; no other rule may report anything."""
    report = check_model_dir(model_dir)
    assert [f.rule for f in report.findings] == [rule], [str(f) for f in report.findings]
    (found,) = report.findings
    assert found.severity is severity, str(found)
    return found


# --- the table and the report -------------------------------------------------------------------------


def test_clean_model_has_no_findings(model: Path) -> None:
    report = check_model_dir(model)
    assert report.findings == ()
    assert report.ok
    assert report.raise_for_errors() is report


def test_rule_table_ids_are_unique_and_documented() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    assert all(r.description and r.fix for r in RULES)
    docs = (Path(__file__).resolve().parents[2] / "docs" / "preflight.md").read_text()
    for rule_id in ids:
        assert f"`{rule_id}`" in docs, f"docs/preflight.md does not list {rule_id}"
    assert get_rule("safetensors-only").severity is Severity.ERROR


def test_errors_come_first_and_raise_for_errors_lists_them(model: Path) -> None:
    (model / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    (model / "pytorch_model.bin").write_bytes(b"pickle")
    report = check_model_dir(model)
    assert [f.severity for f in report.findings] == [Severity.ERROR, Severity.WARNING]
    assert report.errors[0].rule == "safetensors-only"
    assert not report.ok
    with pytest.raises(PreflightError) as info:
        report.raise_for_errors()
    assert info.value.findings == report.errors
    assert "safetensors-only (pytorch_model.bin)" in str(info.value)
    assert "chat-template" not in str(info.value)  # warnings don't raise


def test_report_orders_by_severity_stably() -> None:
    def f(rule: str, severity: Severity) -> Finding:
        return Finding(rule=rule, path=".", message="m", severity=severity)

    report = PreflightReport.of(
        "d", [f("a", Severity.INFO), f("b", Severity.WARNING), f("c", Severity.ERROR), f("d", Severity.ERROR)]
    )
    assert [x.rule for x in report.findings] == ["c", "d", "b", "a"]


def test_missing_directory_is_an_error_finding(tmp_path: Path) -> None:
    report = check_model_dir(tmp_path / "nope")
    assert [(f.rule, f.path) for f in report.findings] == [("model-dir", ".")]
    assert "does not exist" in report.findings[0].message
    (tmp_path / "file").write_text("x")
    assert "not a directory" in check_model_dir(tmp_path / "file").findings[0].message


def test_messages_are_self_contained(model: Path) -> None:
    (model / "consolidated.00.pth").write_bytes(b"x")
    (error,) = check_model_dir(model).errors
    assert str(error).startswith("[error] safetensors-only (consolidated.00.pth): ")
    assert "safetensors" in error.message and "delete" in error.message


def test_preflight_loads_no_heavy_module(model: Path) -> None:
    probe = (
        "import sys\nfrom bedrock_ft.preflight import check_model_dir\n"
        f"assert check_model_dir({str(model)!r}).ok\n"
        "print([m for m in ('torch', 'transformers', 'safetensors', 'tokenizers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- config.json --------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_config_json_missing_or_invalid(model: Path, content: str | None) -> None:
    if content is None:
        (model / "config.json").unlink()
    else:
        (model / "config.json").write_text(content)
    assert only(model, "config-json").path == "config.json"


@pytest.mark.parametrize("key", ["model_type", "architectures"])
def test_config_needs_model_type_and_architectures(model: Path, key: str) -> None:
    edit_json(model / "config.json", **{key: None})
    assert key in only(model, "config-keys").message


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({"architectures": [["LlamaForCausalLM"]]}, 'architectures is [["LlamaForCausalLM"]]'),
        ({"architectures": "LlamaForCausalLM"}, 'architectures is "LlamaForCausalLM"'),
        ({"model_type": ["llama"]}, 'model_type is ["llama"]'),
        ({"model_type": 7, "architectures": [{"a": 1}]}, "model_type is 7"),
    ],
)
def test_config_keys_of_the_wrong_type_are_a_finding_not_a_crash(
    model: Path, changes: dict[str, Any], shown: str
) -> None:
    edit_json(model / "config.json", **changes)
    report = check_model_dir(model)
    assert {f.rule for f in report.findings} == {"config-keys"}, [str(f) for f in report.findings]
    assert any(shown in f.message for f in report.findings)


def test_a_well_typed_key_still_picks_the_architecture_beside_a_bad_one(model: Path) -> None:
    edit_json(model / "config.json", model_type=["llama"], architectures=["LlamaForSequenceClassification"])
    assert {f.rule for f in check_model_dir(model).findings} == {"config-keys", "architecture"}


def test_a_tokenizer_class_that_is_not_a_string_is_a_finding(model: Path) -> None:
    edit_json(model / "tokenizer_config.json", tokenizer_class=["GPT2Tokenizer"])
    assert "['GPT2Tokenizer']" in only(model, "tokenizer-class").message


def test_config_with_only_transformers5_dtype_is_a_warning(model: Path) -> None:
    edit_json(model / "config.json", torch_dtype=None, dtype="bfloat16")
    message = only(model, "config-torch-dtype", Severity.WARNING).message
    assert 'only "dtype"' in message and '"torch_dtype": "bfloat16"' in message


# --- architecture -------------------------------------------------------------------------------------


def test_unknown_model_type_names_it_and_lists_supported(model: Path) -> None:
    edit_json(model / "config.json", model_type="phi3", architectures=["Phi3ForCausalLM"])
    message = only(model, "architecture").message
    assert "'phi3'" in message
    assert "llama" in message and "qwen2" in message and "mistral" in message


def test_class_bedrock_does_not_accept(model: Path) -> None:
    edit_json(model / "config.json", architectures=["LlamaForSequenceClassification"])
    assert "LlamaForCausalLM" in only(model, "architecture").message


@pytest.fixture
def neox() -> Iterator[None]:
    def broken_rule(config: Mapping[str, Any]) -> Iterator[Finding]:
        raise KeyError("hidden_size")

    register_architecture(
        Architecture(
            name="test_neox",
            model_types=("test_neox",),
            hf_architectures=("TestNeoXForCausalLM",),
            bedrock_supported=False,
        )
    )
    register_architecture(
        Architecture(
            name="test_broken",
            model_types=("test_broken",),
            hf_architectures=("TestBrokenForCausalLM",),
            preflight_rules=(broken_rule,),
        )
    )
    yield
    unregister_architecture("test_neox")
    unregister_architecture("test_broken")


@pytest.mark.usefixtures("neox")
def test_registered_but_not_bedrock_supported(model: Path) -> None:
    edit_json(model / "config.json", model_type="test_neox", architectures=["TestNeoXForCausalLM"])
    message = only(model, "architecture").message
    assert "test_neox" in message and "does not import it" in message


@pytest.mark.usefixtures("neox")
def test_a_crashing_architecture_rule_is_a_warning_not_a_crash(model: Path) -> None:
    edit_json(model / "config.json", model_type="test_broken", architectures=["TestBrokenForCausalLM"])
    assert "KeyError" in only(model, "architecture", Severity.WARNING).message


def test_architecture_rules_run_llama3_rope_override(model: Path) -> None:
    rope = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}  # fmt: skip
    edit_json(model / "config.json", rope_theta=500000.0, rope_scaling=rope)
    only(model, "llama3-rope-override", Severity.WARNING)


# --- weights ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["pytorch_model.bin", "training_args.bin", "model.pt", "original/consolidated.00.pth", "m.gguf"]
)
def test_safetensors_only_refuses_pickles_and_gguf(model: Path, name: str) -> None:
    (model / name).parent.mkdir(exist_ok=True)
    (model / name).write_bytes(b"x")
    assert only(model, "safetensors-only").path == name


def test_no_safetensors_at_all(model: Path) -> None:
    (model / "model.safetensors").unlink()
    assert "no .safetensors" in only(model, "safetensors-only").message


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    if how == "truncated":
        path.write_bytes(data[:-10])
    elif how == "trailing bytes":
        path.write_bytes(data + b"\0" * 4)
    elif how == "short":
        path.write_bytes(data[:5])
    elif how == "length past end":
        path.write_bytes(struct.pack("<Q", len(data)) + data[8:])
    elif how == "bad json":
        path.write_bytes(data[:8] + b"{" + data[9 : 8 + n].replace(b'"', b"'") + data[8 + n :])
    elif how == "overlapping tensors":
        header = json.loads(data[8 : 8 + n])
        header["model.norm.weight"]["data_offsets"] = [0, 8]  # over the embedding's first bytes
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n : -8])
    elif how == "wrong size for shape":
        header = json.loads(data[8 : 8 + n])
        header["model.norm.weight"]["shape"] = [3]
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


@pytest.mark.parametrize(
    "how",
    ["truncated", "trailing bytes", "short", "length past end", "bad json", "overlapping tensors",
     "wrong size for shape"],
)  # fmt: skip
def test_safetensors_header_must_parse_and_cover_the_file(model: Path, how: str) -> None:
    _corrupt(model / "model.safetensors", how)
    found = findings(model, "safetensors-header")
    assert [(f.path, f.severity) for f in found] == [("model.safetensors", Severity.ERROR)]


def sharded(model: Path) -> dict[str, str]:
    """Split the clean model into two shards with an index; returns the weight_map."""
    (model / "model.safetensors").unlink()
    spec = tensors()
    names = list(spec)
    write_safetensors(model / "model-00001-of-00002.safetensors", {n: spec[n] for n in names[:2]})
    write_safetensors(model / "model-00002-of-00002.safetensors", {n: spec[n] for n in names[2:]})
    weight_map = {n: f"model-0000{1 if i < 2 else 2}-of-00002.safetensors" for i, n in enumerate(names)}
    write_json(model / "model.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})
    return weight_map


def test_sharded_model_with_consistent_index_is_clean(model: Path) -> None:
    sharded(model)
    assert check_model_dir(model).findings == ()


def test_index_names_a_missing_shard(model: Path) -> None:
    sharded(model)
    (model / "model-00002-of-00002.safetensors").unlink()
    assert "missing" in only(model, "safetensors-index").message


def test_index_maps_a_tensor_the_shard_lacks(model: Path) -> None:
    weight_map = sharded(model)
    weight_map["lm_head.weight"] = "model-00002-of-00002.safetensors"
    write_json(model / "model.safetensors.index.json", {"weight_map": weight_map})
    assert "'lm_head.weight'" in only(model, "safetensors-index").message


def test_index_without_weight_map(model: Path) -> None:
    sharded(model)
    (model / "model.safetensors.index.json").write_text("{}")
    only(model, "safetensors-index")


def test_shards_without_index(model: Path) -> None:
    sharded(model)
    (model / "model.safetensors.index.json").unlink()
    assert "neither model.safetensors nor" in only(model, "safetensors-index").message


def test_shard_the_index_does_not_mention_is_a_warning(model: Path) -> None:
    sharded(model)
    write_safetensors(model / "model-00003-of-00003.safetensors", {"x": ("BF16", [2])})
    found = only(model, "safetensors-index", Severity.WARNING)
    assert found.path == "model-00003-of-00003.safetensors"


def test_safetensors_beside_model_safetensors_is_a_warning(model: Path) -> None:
    write_safetensors(model / "adapter_model.safetensors", {"x": ("BF16", [2])})
    assert only(model, "safetensors-index", Severity.WARNING).path == "adapter_model.safetensors"


@pytest.mark.parametrize("dtype", ["I8", "U8", "F8_E4M3", "I64"])
def test_non_float_weights_are_refused(model: Path, dtype: str) -> None:
    spec = tensors()
    spec["model.layers.0.self_attn.q_proj.weight"] = (dtype, [4, 4])
    write_safetensors(model / "model.safetensors", spec)
    message = only(model, "weight-dtype").message
    assert f"1 {dtype} (e.g. 'model.layers.0.self_attn.q_proj.weight')" in message


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_float_weights_pass(model: Path, dtype: str) -> None:
    write_safetensors(model / "model.safetensors", tensors(dtype=dtype))
    assert check_model_dir(model).findings == ()


def test_config_dtype_must_be_a_float(model: Path) -> None:
    edit_json(model / "config.json", torch_dtype="float8_e4m3fn")
    assert only(model, "weight-dtype").path == "config.json"


@pytest.mark.parametrize("nested", [False, True])
def test_quantization_config_is_refused(model: Path, nested: bool) -> None:
    quant = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    if nested:
        edit_json(model / "config.json", text_config={"quantization_config": quant})
    else:
        edit_json(model / "config.json", quantization_config=quant)
    assert "'bitsandbytes'" in only(model, "quantization-config").message


# Sparse files take no disk on Linux and macOS; NTFS would write every byte.
sparse_files = pytest.mark.skipif(sys.platform == "win32", reason="needs sparse files")


def _huge(model: Path, gigabytes: int) -> None:
    """Add a sparse shard of about ``gigabytes`` GB (no disk used) to the weights."""
    spec = tensors()
    spec["model.layers.1.mlp.weight"] = ("BF16", [gigabytes * 500_000_000 + 1])
    write_safetensors(model / "model.safetensors", spec, sparse=True)


@sparse_files
def test_text_model_over_200_gb(model: Path) -> None:
    _huge(model, 200)
    assert "200 GB limit for text models" in only(model, "weight-size").message


@sparse_files
def test_text_model_at_150_gb_is_fine_but_multimodal_is_not(model: Path) -> None:
    _huge(model, 150)
    assert check_model_dir(model).findings == ()
    edit_json(model / "config.json", model_type="mllama", architectures=["MllamaForConditionalGeneration"])
    assert "100 GB limit for multimodal" in only(model, "weight-size").message


def test_context_over_128k(model: Path) -> None:
    edit_json(model / "config.json", max_position_embeddings=CONTEXT_LIMIT)
    assert check_model_dir(model).findings == ()
    edit_json(model / "config.json", max_position_embeddings=CONTEXT_LIMIT * 2)
    assert "262144" in only(model, "context-length").message


def test_context_of_gpt_bigcode_is_read_from_n_positions(model: Path) -> None:
    edit_json(
        model / "config.json",
        model_type="gpt_bigcode",
        architectures=["GPTBigCodeForCausalLM"],
        max_position_embeddings=None,
        n_positions=CONTEXT_LIMIT,
    )
    assert not findings(model, "context-length")
    edit_json(model / "config.json", n_positions=CONTEXT_LIMIT + 1)
    assert f"n_positions is {CONTEXT_LIMIT + 1}" in only(model, "context-length").message


def test_context_of_a_multimodal_model_is_read_from_text_config(model: Path) -> None:
    edit_json(
        model / "config.json",
        model_type="mllama",
        architectures=["MllamaForConditionalGeneration"],
        max_position_embeddings=None,
        text_config={"max_position_embeddings": 262144, "vocab_size": VOCAB},
    )
    assert "text_config.max_position_embeddings" in only(model, "context-length").message


# --- tokenizer ----------------------------------------------------------------------------------------


def test_tokenizer_config_is_required(model: Path) -> None:
    (model / "tokenizer_config.json").unlink()
    found = [f for f in check_model_dir(model).findings if f.severity is Severity.ERROR]
    assert [(f.rule, f.path) for f in found] == [("tokenizer-files", "tokenizer_config.json")]


def test_tokenizer_json_or_model_is_required(model: Path) -> None:
    (model / "tokenizer.json").unlink()
    assert "tokenizer.model" in only(model, "tokenizer-files").message
    (model / "tokenizer.model").write_bytes(b"sentencepiece")
    assert check_model_dir(model).findings == ()


def test_tokenizer_json_must_parse(model: Path) -> None:
    (model / "tokenizer.json").write_text("{")
    assert only(model, "tokenizer-files").path == "tokenizer.json"


@pytest.mark.parametrize(
    "cls", ["LlamaTokenizerFast", "Qwen2Tokenizer", "PreTrainedTokenizerFast", "T5TokenizerFast",
            "CodeLlamaTokenizer", "GPTNeoXTokenizerFast"],
)  # fmt: skip
def test_supported_tokenizer_classes(model: Path, cls: str) -> None:
    edit_json(model / "tokenizer_config.json", tokenizer_class=cls)
    assert check_model_dir(model).findings == ()


@pytest.mark.parametrize("cls", ["TokenizersBackend", "QWenTokenizer", "GemmaTokenizerFast"])
def test_unsupported_tokenizer_class(model: Path, cls: str) -> None:
    edit_json(model / "tokenizer_config.json", tokenizer_class=cls)
    message = only(model, "tokenizer-class").message
    assert repr(cls) in message
    assert ("transformers 5" in message) == (cls == "TokenizersBackend")


def test_no_tokenizer_class_is_a_warning(model: Path) -> None:
    edit_json(model / "tokenizer_config.json", tokenizer_class=None)
    only(model, "tokenizer-class", Severity.WARNING)


def test_no_chat_template_is_a_warning(model: Path) -> None:
    edit_json(model / "tokenizer_config.json", chat_template=None)
    message = only(model, "chat-template", Severity.WARNING).message
    assert "OpenAIChatCompletion and Converse" in message


def test_no_chat_template_on_a_family_without_converse(model: Path) -> None:
    edit_json(model / "config.json", model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    edit_json(model / "tokenizer_config.json", chat_template=None)
    message = only(model, "chat-template", Severity.WARNING).message
    assert "OpenAIChatCompletion will not work" in message


def test_a_template_only_in_chat_template_jinja_is_a_warning(model: Path) -> None:
    # AWS's guide and its Converse samples put chat_template in tokenizer_config.json; no source says
    # Bedrock reads a separate chat_template.jinja.
    edit_json(model / "tokenizer_config.json", chat_template=None)
    (model / "chat_template.jinja").write_text(CHATML)
    warning = only(model, "chat-template", Severity.WARNING)
    assert (
        warning.path == "chat_template.jinja"
        and "Copy the template into tokenizer_config.json" in warning.message
    )
    edit_json(model / "tokenizer_config.json", chat_template="{{ messages[0].content }}")
    assert "Bedrock reads tokenizer_config.json's" in only(model, "chat-template", Severity.INFO).message


def test_tokenizer_larger_than_the_embedding_is_an_error(model: Path) -> None:
    write_json(model / "tokenizer.json", tokenizer_json(VOCAB + 1))
    message = only(model, "tokenizer-vocab").message
    assert f"{VOCAB + 1} tokens" in message and f"{VOCAB} rows" in message


def test_embedding_padded_past_the_tokenizer_is_fine(model: Path) -> None:
    write_json(model / "tokenizer.json", tokenizer_json(VOCAB - 4))
    assert check_model_dir(model).findings == ()


def test_embedding_far_larger_than_the_tokenizer_is_a_warning(model: Path) -> None:
    write_json(model / "tokenizer.json", tokenizer_json(VOCAB // 2))
    only(model, "tokenizer-vocab", Severity.WARNING)


def test_embedding_rows_come_from_the_weights_not_config(model: Path) -> None:
    # Mllama's embedding has vocab_size + 8 rows; the header, not config.json, says how many ids fit.
    write_safetensors(model / "model.safetensors", tensors(VOCAB + 8))
    write_json(model / "tokenizer.json", tokenizer_json(VOCAB + 1))
    assert check_model_dir(model).findings == ()


def test_unigram_vocab_is_counted(model: Path) -> None:
    unigram = {"added_tokens": [], "model": {"type": "Unigram", "vocab": [[f"t{i}", 0.0] for i in range(70)]}}
    write_json(model / "tokenizer.json", unigram)
    assert "70 tokens" in only(model, "tokenizer-vocab").message


# --- the CLI ------------------------------------------------------------------------------------------


def test_cli_validate_clean_model(run_cli: RunCli, model: Path) -> None:
    code, out, err = run_cli("validate", str(model))
    assert code == 0
    assert "0 error(s), 0 warning(s); passes preflight" in err
    assert out == ""


def test_cli_validate_exits_1_on_errors(run_cli: RunCli, model: Path) -> None:
    (model / "pytorch_model.bin").write_bytes(b"x")
    edit_json(model / "config.json", architectures=["LlamaForSequenceClassification"])
    code, _, err = run_cli("validate", str(model))
    assert code == 1
    assert "safetensors-only (pytorch_model.bin)" in err
    assert "['LlamaForSequenceClassification']" in err  # brackets survive rich
    assert "2 error(s)" in err


def test_cli_validate_json(run_cli: RunCli, model: Path) -> None:
    edit_json(model / "tokenizer_config.json", chat_template=None)
    code, out, _ = run_cli("validate", str(model), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] is True
    assert [f["rule"] for f in data["findings"]] == ["chat-template"]
    assert PreflightReport.model_validate(data).warnings[0].severity is Severity.WARNING


def test_cli_validate_missing_dir(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, _ = run_cli("validate", str(tmp_path / "nope"), "--json")
    assert code == 1
    assert json.loads(out)["findings"][0]["rule"] == "model-dir"
