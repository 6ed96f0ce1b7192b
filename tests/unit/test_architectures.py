from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bedrock_ft.architectures import (
    ApiFormat,
    Architecture,
    architecture_for_config,
    get_architecture,
    list_architectures,
    register_architecture,
    unregister_architecture,
)
from bedrock_ft.errors import RegistryError
from bedrock_ft.preflight import Severity

BUILT_INS = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "flan_t5", "gpt_bigcode"}


def test_built_ins_are_registered() -> None:
    assert set(list_architectures()) >= BUILT_INS


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("mistral", "mistral"),
        ("MistralForCausalLM", "mistral"),
        ("t5", "flan_t5"),
        ("Qwen3MoeForCausalLM", "qwen3_moe"),
        ("gpt_bigcode", "gpt_bigcode"),
    ],
)
def test_lookup_by_name_model_type_or_class(key: str, name: str) -> None:
    assert get_architecture(key).name == name


def test_unknown_architecture_lists_the_supported_ones() -> None:
    with pytest.raises(RegistryError) as info:
        get_architecture("gpt_neox")
    text = str(info.value)
    assert "unknown architecture 'gpt_neox'" in text
    for name in BUILT_INS:
        assert name in text


def test_architecture_for_config_reads_model_type_then_class() -> None:
    assert architecture_for_config({"model_type": "llama"}).name == "llama"
    assert architecture_for_config({"architectures": ["MixtralForCausalLM"]}).name == "mixtral"
    with pytest.raises(RegistryError, match=r"unknown architecture 'gpt_neox'.*supported: "):
        architecture_for_config({"model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"]})


def test_what_each_family_knows() -> None:
    mistral = get_architecture("mistral")
    assert mistral.native_format is not None
    assert mistral.native_format.max_tokens_param == "max_tokens"
    assert mistral.native_format.text_path == "outputs[0].text"
    llama = get_architecture("llama")
    assert llama.native_format is not None and llama.native_format.max_tokens_param == "max_gen_len"
    assert "down_proj" in llama.lora_target_modules
    assert set(get_architecture("mixtral").lora_target_modules) >= {"w1", "w2", "w3"}
    # Converse is not supported for Qwen2.5 (model_type qwen2), the Qwen VL models and GPT-OSS (the
    # guide), nor for Qwen3 (AWS's Qwen3 sample: the cautious source wins).
    for name in ("qwen2", "qwen2_vl", "qwen2_5_vl", "gpt_oss", "qwen3", "qwen3_moe"):
        assert get_architecture(name).supports_converse is False
    assert get_architecture("llama").supports_converse is True
    # GPT-OSS takes only the OpenAI formats.
    assert get_architecture("gpt_oss").formats() == ("OpenAICompletion", "OpenAIChatCompletion")
    assert ApiFormat.OPENAI_CHAT_COMPLETION in get_architecture("qwen2").api_formats
    assert get_architecture("qwen2_vl").max_weight_bytes == 100 * 10**9
    assert get_architecture("llama").max_weight_bytes == 200 * 10**9


def _llama3_config(**rope: object) -> dict[str, object]:
    return {"model_type": "llama", "vocab_size": 128256, "rope_theta": 500000.0, "rope_scaling": rope or None}


def test_llama3_rope_override_warns_with_its_effect() -> None:
    # Llama 3.2 1B/3B ship factor 32; Bedrock uses factor 8.
    config = _llama3_config(
        rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=8192,
    )  # fmt: skip
    findings = get_architecture("llama").check_config(config)
    assert [f.rule for f in findings] == ["llama3-rope-override"]
    assert findings[0].severity is Severity.WARNING
    assert findings[0].path == "config.json"
    assert "'factor': 8.0" in findings[0].message and "32.0" in findings[0].message
    assert "differ" in findings[0].message


def test_llama3_rope_override_is_silent_when_it_changes_nothing() -> None:
    same = _llama3_config(
        rope_type="llama3",
        factor=8,
        low_freq_factor=1,
        high_freq_factor=4,
        original_max_position_embeddings=8192,
    )
    assert get_architecture("llama").check_config(same) == []
    llama2 = {"model_type": "llama", "vocab_size": 32000, "rope_theta": 10000.0, "rope_scaling": None}
    assert get_architecture("llama").check_config(llama2) == []


def test_llama3_rope_rule_reads_mllama_text_config() -> None:
    config = {"model_type": "mllama", "text_config": _llama3_config(rope_type="llama3", factor=32.0)}
    assert [f.rule for f in get_architecture("mllama").check_config(config)] == ["llama3-rope-override"]


def test_llama3_without_rope_scaling_is_warned() -> None:
    findings = get_architecture("llama").check_config(_llama3_config())
    assert findings and "None" in findings[0].message


def _arch(name: str = "my_family", **kw: object) -> Architecture:
    fields: dict[str, object] = {"model_types": ("my_type",), "hf_architectures": ("MyForCausalLM",)}
    fields.update(kw)
    return Architecture(name=name, **fields)  # type: ignore[arg-type]


def test_register_and_unregister_a_new_architecture() -> None:
    arch = register_architecture(_arch())
    try:
        assert get_architecture("my_family") is arch
        assert get_architecture("my_type") is arch
        assert architecture_for_config({"model_type": "my_type"}) is arch
    finally:
        unregister_architecture("my_family")
    with pytest.raises(RegistryError):
        get_architecture("my_family")


def test_registering_twice_is_refused() -> None:
    register_architecture(_arch())
    try:
        with pytest.raises(RegistryError, match="'my_family' is already registered; pass replace=True"):
            register_architecture(_arch())
        replaced = register_architecture(_arch(description="v2"), replace=True)
        assert get_architecture("my_family") is replaced
    finally:
        unregister_architecture("my_family")


def test_a_model_type_or_class_owned_by_another_architecture_is_refused() -> None:
    with pytest.raises(RegistryError, match="model_type 'mistral' already belongs to architecture 'mistral'"):
        register_architecture(_arch(model_types=("mistral",)))
    with pytest.raises(
        RegistryError, match="class 'LlamaForCausalLM' already belongs to architecture 'llama'"
    ):
        register_architecture(_arch(hf_architectures=("LlamaForCausalLM",)))
    assert "my_family" not in list_architectures()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_types": ()}, "model_types must be a non-empty tuple"),
        ({"model_types": ("",)}, "every entry of model_types must be a non-empty string"),
        ({"hf_architectures": ()}, "hf_architectures must be a non-empty tuple"),
        ({"name": "Bad Name"}, "architecture name 'Bad Name' is malformed"),
        ({"lora_target_modules": ()}, "lora_target_modules must name at least one module"),
        ({"api_formats": (ApiFormat.BEDROCK_COMPLETION,)}, "Converse needs the chat format"),
    ],
)
def test_malformed_registrations_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        register_architecture(_arch(**kwargs))
    assert "my_family" not in list_architectures()


def test_not_an_architecture_is_refused() -> None:
    with pytest.raises(RegistryError, match="expects an Architecture, got dict"):
        register_architecture({"name": "x"})  # type: ignore[arg-type]


def _install_plugin(site: Path, name: str, module_source: str, entry: str) -> None:
    """A real installed distribution (a dist-info on sys.path) declaring an entry point."""
    (site / f"{name}.py").write_text(textwrap.dedent(module_source))
    dist = site / f"{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[bedrock_ft.architectures]\n{entry}\n")


def _run_with(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n{code}"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_entry_point_plugins_are_discovered(tmp_path: Path) -> None:
    _install_plugin(
        tmp_path,
        "bft_neox_plugin",
        """
        from bedrock_ft.architectures import Architecture
        NEOX = Architecture(
            name="gpt_neox", model_types=("gpt_neox",), hf_architectures=("GPTNeoXForCausalLM",),
            lora_target_modules=("query_key_value", "dense"),
        )
        """,
        "gpt_neox = bft_neox_plugin:NEOX",
    )
    proc = _run_with(
        tmp_path,
        "import bedrock_ft\nprint(bedrock_ft.get_architecture('GPTNeoXForCausalLM').lora_target_modules)",
    )
    assert proc.returncode == 0, proc.stderr
    assert "('query_key_value', 'dense')" in proc.stdout


def test_no_thread_sees_a_half_loaded_registry(tmp_path: Path) -> None:
    _install_plugin(
        tmp_path,
        "bft_slow_plugin",
        """
        import time
        from bedrock_ft.architectures import Architecture
        time.sleep(1.0)
        SLOW = Architecture(name="slow_family", model_types=("slow",), hf_architectures=("SlowForCausalLM",))
        """,
        "slow = bft_slow_plugin:SLOW",
    )
    code = """
import threading, time, bedrock_ft
out = []
def look():
    try:
        out.append(bedrock_ft.get_architecture("slow_family").name)
    except Exception as exc:
        out.append(repr(exc))
first = threading.Thread(target=look); first.start(); time.sleep(0.3)
second = threading.Thread(target=look); second.start()
first.join(); second.join()
print(out)
"""
    proc = _run_with(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['slow_family', 'slow_family']"


def test_a_broken_plugin_warns_and_the_rest_still_works(tmp_path: Path) -> None:
    _install_plugin(
        tmp_path, "bft_broken_plugin", "raise RuntimeError('plugin bug')\n", "broken = bft_broken_plugin:X"
    )
    proc = _run_with(tmp_path, "import bedrock_ft\nprint(bedrock_ft.get_architecture('llama').name)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "llama"
    assert "entry point 'broken'" in proc.stderr and "plugin bug" in proc.stderr
