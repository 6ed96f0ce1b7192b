"""AdapterMerger on the embedded model: both modes, the export, and the merged model in use."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bedrock_ft.artifacts import ModelArtifact

ALLOWED = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "model.safetensors.index.json",
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_memory_and_streaming_write_the_same_bytes(merges: dict[str, ModelArtifact]) -> None:
    memory, streaming = merges["memory"], merges["streaming"]
    assert memory.merge.mode == "memory" and streaming.merge.mode == "streaming"
    # Both compute W + scale * B @ A in float32 and round once: not close, identical.
    assert [(f.path, f.sha256) for f in memory.files] == [(f.path, f.sha256) for f in streaming.files]
    assert memory.parameter_count == streaming.parameter_count == 134_515_008


@pytest.mark.parametrize("mode", ["memory", "streaming"])
def test_export_holds_exactly_what_bedrock_reads(merges: dict[str, ModelArtifact], mode: str) -> None:
    from bedrock_ft.chat_templates import get_chat_template
    from bedrock_ft.preflight import check_model_dir

    artifact = merges[mode]
    model_dir = Path(artifact.model_dir)
    names = sorted(p.name for p in model_dir.iterdir())
    shards = [n for n in names if n.endswith(".safetensors")]
    assert set(names) - set(shards) == ALLOWED
    assert len(shards) == 3 and all(re.fullmatch(r"model-0000\d-of-00003\.safetensors", n) for n in shards)
    # The manifest lists every file with its real size and sha256, and sits outside the export.
    assert {f.path: (f.size, f.sha256) for f in artifact.files} == {
        n: ((model_dir / n).stat().st_size, _sha(model_dir / n)) for n in names
    }
    assert artifact.total_bytes == sum((model_dir / n).stat().st_size for n in names)
    assert (model_dir.parent / "manifest.json").is_file()
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards
    config = json.loads((model_dir / "config.json").read_text())
    assert config["torch_dtype"] == "bfloat16" and config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    # The trained template, embedded, without trl's {% generation %} markers.
    template = json.loads((model_dir / "tokenizer_config.json").read_text())["chat_template"]
    assert template == artifact.chat_template
    assert "generation %" not in template and "generation -%" not in template
    assert "{%- generation" in get_chat_template("chatml").source
    # Preflight ran on the written directory, and agrees now.
    assert artifact.preflight is not None and artifact.preflight.ok and not artifact.preflight.findings
    assert check_model_dir(model_dir).findings == ()
    assert ModelArtifact.read(model_dir.parent).files == artifact.files


def test_the_checks_ran_and_measured_a_real_effect(merges: dict[str, ModelArtifact]) -> None:
    checks = merges["memory"].merge.verification
    assert checks is not None and checks.logits is not None
    logits = checks.logits
    assert logits.prompts == 4  # three text prompts, one chat
    assert logits.max_rel is not None and logits.tolerance is not None and logits.max_rel <= logits.tolerance
    # The adapter moves the logits far more than the merge's rounding does.
    assert logits.adapter_effect is not None and logits.max_abs is not None
    assert logits.adapter_effect > 20 * logits.max_abs
    assert logits.error_vs_effect == pytest.approx(logits.max_abs / logits.adapter_effect)
    for mode in ("memory", "streaming"):  # both modes check sampled weights against peft's own merge
        verification = merges[mode].merge.verification
        assert verification is not None and verification.weights is not None
        weights = verification.weights
        assert len(weights.checked) == 5  # 4 adapted, 1 untouched
        assert weights.max_rel is not None and weights.tolerance is not None
        assert weights.max_rel <= weights.tolerance
    streaming = merges["streaming"].merge.verification
    assert streaming is not None and streaming.logits is None


def test_merged_model_reloads_and_generates(merges: dict[str, ModelArtifact], adapter_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = merges["streaming"].model_dir
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    merged = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")  # the dtype config.json names
    assert merged.dtype == torch.bfloat16
    base_dir = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    unmerged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), adapter_dir
    )
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 2?"}], add_generation_prompt=True, return_tensors="pt"
    )
    with torch.no_grad():
        got = merged.float()(prompt).logits
        want = unmerged(prompt).logits
        with unmerged.disable_adapter():
            base = unmerged(prompt).logits
    error = float((got - want).abs().max())
    assert error < 0.05 * float(want.abs().max())
    assert float((base - want).abs().max()) > 20 * error  # the merged model is the adapted one
    out = merged.generate(prompt, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > prompt.shape[1]


def test_float16_export(adapter_dir: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    from bedrock_ft.merging import AdapterMerger, MergeConfig

    artifact = AdapterMerger(
        MergeConfig(output_dir=str(tmp_path / "m"), dtype="float16", mode="streaming")
    ).merge(adapter_dir)
    model_dir = Path(artifact.model_dir)
    assert json.loads((model_dir / "config.json").read_text())["torch_dtype"] == "float16"
    shard = next(model_dir.glob("model-*.safetensors"))
    with safe_open(str(shard), "pt") as fh:
        assert {str(fh.get_tensor(k).dtype) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__ == {"torch.float16"}
    assert artifact.merge.verification.weights.tolerance == 2.0**-10


def test_every_input_form(adapter_dir: Path, tmp_path: Path, merges: dict[str, ModelArtifact]) -> None:
    """An AdapterArtifact, a run directory with a manifest, and a bare adapter directory merge alike."""
    from bedrock_ft.artifacts import AdapterArtifact
    from bedrock_ft.merging import AdapterMerger, MergeConfig

    base = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    artifact = AdapterArtifact(adapter_dir=str(adapter_dir), base_model=base, architecture="llama", lora={})
    run = tmp_path / "run"
    run.mkdir()
    artifact.write(run)
    want = {f.path: f.sha256 for f in merges["streaming"].files}
    for i, source in enumerate([artifact, run, run / "manifest.json"]):
        config = MergeConfig(output_dir=str(tmp_path / f"out{i}"), mode="streaming", max_shard_size="100MB")
        got: Any = AdapterMerger(config).merge(source)
        assert {f.path: f.sha256 for f in got.files} == want
        assert got.adapter_dir == str(adapter_dir)
