"""Bad input gets a MergeError that names the file, tensor or setting, and nothing is half-written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bedrock_ft.errors import MergeError
from bedrock_ft.merging import AdapterMerger, MergeConfig

from .conftest import make_adapter


def _merge(adapter: object, out: Path, **settings: object) -> object:
    return AdapterMerger(MergeConfig(output_dir=str(out), **settings)).merge(adapter)  # type: ignore[arg-type]


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".bedrock-ft-")]


def _tiny_llama(out: Path, embedded_dir: Path, layers: int) -> Path:
    """A tiny random Llama with the embedded tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedded_dir / name, out / name)
    return out


@pytest.fixture(scope="module")
def other_base(tmp_path_factory: pytest.TempPathFactory, embedded_dir: Path) -> Path:
    """A different (tiny, random) Llama: the wrong base for the embedded model's adapter."""
    return _tiny_llama(tmp_path_factory.mktemp("other-base"), embedded_dir, layers=2)


def test_adapter_for_another_base_names_the_first_tensor(
    adapter_dir: Path, other_base: Path, tmp_path: Path
) -> None:
    with pytest.raises(MergeError) as info:
        _merge(adapter_dir, tmp_path / "out", base_model=str(other_base))
    message = str(info.value)
    assert "does not fit this base model" in message
    assert "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight" in message
    assert "base tensor model.layers.0.mlp.down_proj.weight is [64, 128]" in message
    assert not (tmp_path / "out").exists()


def test_adapter_with_a_module_the_base_lacks(other_base: Path, embedded_dir: Path, tmp_path: Path) -> None:
    """Same shapes, one layer more: the adapter's layer 2 has no weight to update in the 2-layer base."""
    deeper = _tiny_llama(tmp_path / "deeper", embedded_dir, layers=3)
    adapter = make_adapter(deeper, tmp_path / "adapter", r=4)
    with pytest.raises(MergeError) as info:
        _merge(adapter, tmp_path / "out", base_model=str(other_base))
    assert (
        "adapter tensor base_model.model.model.layers.2.mlp.down_proj.lora_A.weight adapts "
        "model.layers.2.mlp.down_proj.weight, which the base model does not have (and 6 more)"
    ) in str(info.value)


def test_architecture_mismatch(adapter_dir: Path, tmp_path: Path, embedded_dir: Path) -> None:
    from bedrock_ft.artifacts import AdapterArtifact

    artifact = AdapterArtifact(
        adapter_dir=str(adapter_dir), base_model=str(embedded_dir), architecture="mistral", lora={}
    )
    with pytest.raises(MergeError, match=r"trained on a mistral model, but base model .* is llama"):
        _merge(artifact, tmp_path / "out")


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ("adapter_config.json", "has no adapter_config.json: not a peft adapter"),
        (
            "adapter_model.safetensors",
            "has no weights: expected adapter_model.safetensors or adapter_model.bin",
        ),
    ],
)
def test_incomplete_adapter_dir(adapter_dir: Path, tmp_path: Path, remove: str, expected: str) -> None:
    broken = tmp_path / "adapter"
    shutil.copytree(adapter_dir, broken)
    (broken / remove).unlink()
    with pytest.raises(MergeError, match=expected):
        _merge(broken, tmp_path / "out")


def test_adapter_missing_or_unfinished_run(tmp_path: Path, adapter_dir: Path) -> None:
    with pytest.raises(MergeError, match="no such file or directory"):
        _merge(tmp_path / "nowhere", tmp_path / "out")
    run = tmp_path / "run"
    shutil.copytree(adapter_dir, run / "adapter")
    with pytest.raises(MergeError, match=r"a training run without manifest\.json, so it did not finish"):
        _merge(run, tmp_path / "out")


def test_recorded_base_not_on_this_machine(adapter_dir: Path, tmp_path: Path) -> None:
    moved = tmp_path / "adapter"
    shutil.copytree(adapter_dir, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "/models/mistral-7b-on-another-box"
    (moved / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(
        MergeError, match=r"recorded with the adapter\) is not a directory here; pass MergeConfig\(base_model"
    ):
        _merge(moved, tmp_path / "out")


@pytest.mark.parametrize(
    ("quant", "name"),
    [
        (
            {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
            "bitsandbytes",
        ),
        ({"quant_method": "gptq", "bits": 4, "group_size": 128}, "GPTQ"),
        ({"quant_method": "awq", "bits": 4, "version": "gemm"}, "AWQ"),
    ],
)
def test_quantized_base_is_refused(
    adapter_dir: Path, embedded_dir: Path, tmp_path: Path, quant: dict[str, object], name: str
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    for f in embedded_dir.iterdir():
        (base / f.name).symlink_to(f)
    (base / "config.json").unlink()
    config = json.loads((embedded_dir / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "quantization_config": quant}))
    with pytest.raises(MergeError) as info:
        _merge(adapter_dir, tmp_path / "out", base_model=str(base))
    message = str(info.value)
    assert f"quantized with {name}" in message
    assert "Merge into the full-precision checkpoint" in message and "MergeConfig(base_model=...)" in message


def test_existing_output_dir(adapter_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(MergeError, match="already exists and holds other files; pass overwrite=True"):
        _merge(adapter_dir, out, mode="streaming")
    # overwrite replaces only an earlier merge: a directory of other files is left alone.
    with pytest.raises(MergeError, match="holds no merge manifest; overwrite replaces only an earlier merge"):
        _merge(adapter_dir, out, mode="streaming", overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"

    merged = tmp_path / "merged"
    first = _merge(adapter_dir, merged, mode="streaming")
    with pytest.raises(MergeError, match=r"already holds this merge .* pass reuse=True"):
        _merge(adapter_dir, merged, mode="streaming")
    again = _merge(adapter_dir, merged, mode="streaming", reuse=True)
    assert again.created_at == first.created_at  # type: ignore[attr-defined]
    # A merge whose files were damaged since is not reused: it is redone (with overwrite) or refused.
    next((merged / "model").glob("model-*.safetensors")).unlink()
    with pytest.raises(MergeError, match=r"holds this merge, damaged \(files missing or resized\)"):
        _merge(adapter_dir, merged, mode="streaming", reuse=True)
    repaired = _merge(adapter_dir, merged, mode="streaming", reuse=True, overwrite=True)
    assert repaired.created_at > first.created_at  # type: ignore[attr-defined]
    redone = _merge(adapter_dir, merged, mode="streaming", dtype="float32", overwrite=True, reuse=True)
    assert redone.dtype == "float32"  # type: ignore[attr-defined]
    assert sorted(p.name for p in merged.iterdir()) == ["manifest.json", "model"]
    assert _leftovers(tmp_path) == []


def test_failure_mid_merge_leaves_nothing(adapter_dir: Path, embedded_dir: Path, tmp_path: Path) -> None:
    """A base value float16 can't hold fails the merge after shards were written: no output, no temp."""
    import torch
    from safetensors.torch import load_file, save_file

    base = tmp_path / "base"
    base.mkdir()
    for f in embedded_dir.iterdir():
        if f.suffix != ".safetensors":
            (base / f.name).symlink_to(f)
    tensors = load_file(str(embedded_dir / "model.safetensors"))
    tensors["model.norm.weight"] = torch.full_like(tensors["model.norm.weight"], 1e6)
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})
    out = tmp_path / "out"
    with pytest.raises(MergeError, match=r"model\.norm\.weight: merged values overflow float16"):
        _merge(
            adapter_dir, out, base_model=str(base), dtype="float16", mode="streaming", max_shard_size="50MB"
        )
    assert not out.exists()
    assert _leftovers(tmp_path) == []
    # The same base merges to bfloat16, which holds 1e6.
    assert _merge(adapter_dir, out, base_model=str(base), mode="streaming").dtype == "bfloat16"  # type: ignore[attr-defined]


def test_bad_config_values() -> None:
    from bedrock_ft.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        MergeConfig(dtype="int8", max_shard_size="2 parsecs", mode="fast")  # type: ignore[arg-type]
    paths = sorted(p.path for p in info.value.problems)
    assert paths == ["dtype", "max_shard_size", "mode"]
